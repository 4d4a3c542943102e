"""A sync TLS connection whose handshake fails (an untrusted certificate, a plain port)
closed none of its TLS socket: brokerkit wraps the socket with
``do_handshake_on_connect=False`` and shakes hands itself, and on a failure redis-py
closes only the raw socket, which the TLS socket had taken over. Each failed connect
kept a file descriptor open for as long as its error (whose traceback holds the TLS
socket) was kept, a retry loop's or a log record's, and left it to the garbage
collector (a ``ResourceWarning: unclosed <ssl.SSLSocket>``)."""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Iterator

import pytest
import redis

import brokerkit
from brokerkit.backends.redis._tls import SharedContextSSLConnection
from brokerkit.exceptions import BrokerError
from tests.redis_server import RedisServer
from tests.redis_tls import TLSRedisServer, require_tls_redis_server

ATTEMPTS = 5


@pytest.fixture(scope="module")
def tls() -> Iterator[TLSRedisServer]:
    with TLSRedisServer(require_tls_redis_server()) as server:
        yield server


@pytest.fixture(scope="module")
def plain() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _failing_connects(port: int, **kwargs: object) -> tuple[list[Exception], int]:
    """Connect ``ATTEMPTS`` times (each failing in the handshake), keeping the errors;
    the file descriptors opened meanwhile."""
    errors: list[Exception] = []
    gc.collect()
    before = _open_fds()
    for _ in range(ATTEMPTS):
        connection = SharedContextSSLConnection(
            host="127.0.0.1", port=port, socket_connect_timeout=10, **kwargs
        )
        with pytest.raises(redis.ConnectionError) as caught:
            connection.connect()
        errors.append(caught.value)
    return errors, _open_fds() - before


@pytest.mark.timeout(120)
def test_a_refused_certificate_leaves_no_tls_socket_open(tls: TLSRedisServer) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        errors, opened = _failing_connects(tls.port)  # the test CA is not trusted
        assert all("CERTIFICATE_VERIFY_FAILED" in str(error) for error in errors)
        assert opened == 0, f"{opened} file descriptors stay open after {ATTEMPTS} failures"
        errors.clear()
        gc.collect()
    unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not unclosed, [str(w.message) for w in unclosed]


@pytest.mark.timeout(120)
def test_a_plain_port_leaves_no_tls_socket_open(tls: TLSRedisServer, plain: RedisServer) -> None:
    errors, opened = _failing_connects(plain.port, ssl_ca_certs=str(tls.files.ca))
    assert all("does not speak TLS" in str(error) for error in errors)
    assert opened == 0, f"{opened} file descriptors stay open after {ATTEMPTS} failures"


@pytest.mark.timeout(120)
def test_a_broker_that_fails_the_handshake_keeps_no_socket(tls: TLSRedisServer) -> None:
    url = f"rediss+list://127.0.0.1:{tls.port}/0?socket_connect_timeout=10"  # CA untrusted
    errors: list[BaseException] = []
    gc.collect()
    before = _open_fds()
    for _ in range(ATTEMPTS):
        with (
            pytest.raises(BrokerError) as caught,
            brokerkit.connect(url, prefix="review28leak") as broker,
        ):
            broker.publish("t", "x")
        errors.append(caught.value)
    opened = _open_fds() - before
    assert opened == 0, f"{opened} file descriptors stay open after {ATTEMPTS} failures"
