"""A plain (non-TLS) port reached over TLS is a ConfigurationError at once.

7974ae9 let OpenSSL's "not TLS" errors ride out as a lost connection when any host of
the URL had shaken TLS hands with this process, and the probe's own verdict ("does not
speak TLS") too, though the probe only ever runs for a port that never did: a Sentinel
URL whose sentinels speak TLS and whose master is plain was retried for the whole
``reconnect_timeout``, then "lost the connection". The probe's verdict now always
stands, and OpenSSL's errors are judged by the server the failing connection names.

redis-py retries a failed connect a few times: each retry probed the plain port again
and waited the grace again; the verdict is now remembered for a few seconds, so the
port is probed once."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from brokerkit.exceptions import ConfigurationError
from tests.proxies import Listener, pipe
from tests.redis_server import RedisServer, publish_once
from tests.redis_tls import TLSRedisServer, TLSSentinel, require_tls_redis_server

APIS = ["sync", "asyncio"]
MASTER = "bkplainmaster"


@pytest.fixture(scope="module")
def tls() -> Iterator[TLSRedisServer]:
    with TLSRedisServer(require_tls_redis_server()) as server:
        yield server


class _PlainMasterSentinel(TLSSentinel):
    """A TLS-only sentinel (certificates of ``tls``) watching ``plain``, a Redis
    without TLS, over plain text."""

    def __init__(self, tls: TLSRedisServer, plain: RedisServer) -> None:
        super().__init__(tls, MASTER)
        text = self.config.read_text()
        text = text.replace(f"127.0.0.1 {tls.port} 1", f"127.0.0.1 {plain.port} 1")
        self.config.write_text(text.replace("tls-replication yes", "tls-replication no"))
        self.plain_port = plain.port

    def start(self, timeout: float = 10.0) -> TLSSentinel:
        tls_port = self.master.port
        self.master.port = self.plain_port  # what start() waits for the sentinel to name
        try:
            return super().start(timeout)
        finally:
            self.master.port = tls_port


@pytest.fixture(scope="module")
def plain_master_sentinel(tls: TLSRedisServer) -> Iterator[_PlainMasterSentinel]:
    with RedisServer() as plain, _PlainMasterSentinel(tls, plain) as sentinel:
        yield sentinel


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", APIS)
def test_a_plain_master_behind_tls_sentinels_is_a_configuration_error(
    plain_master_sentinel: _PlainMasterSentinel, tls: TLSRedisServer, prefix: str, api: str
) -> None:
    url = (
        f"rediss+list://127.0.0.1:{plain_master_sentinel.port}/0?sentinel={MASTER}"
        f"&ssl_ca_certs={tls.files.ca}&socket_connect_timeout=5"
    )
    with pytest.raises(ConfigurationError) as caught:
        publish_once(api, url, "t", "x", prefix=prefix, reconnect_timeout=4)
    message = str(caught.value)
    assert "does not speak TLS" in message
    assert f"127.0.0.1:{plain_master_sentinel.plain_port}" in message


class _FirstBytes(Listener):
    """A TCP proxy to ``target`` that records what each connection sends first."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.first: list[bytes] = []
        self._lock = threading.Lock()
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        self.keep(upstream)
        self.spawn(pipe, client, upstream, self._record)
        self.spawn(pipe, upstream, client)

    def _record(self, data: bytes, first: bool) -> bytes:
        if first:
            with self._lock:
                self.first.append(data)
        return data

    def pings(self) -> int:
        with self._lock:
            return sum(1 for data in self.first if data.startswith(b"PING"))


@pytest.fixture(scope="module")
def plain() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", APIS)
def test_a_plain_port_is_probed_once_not_at_each_retry(
    plain: RedisServer, tls: TLSRedisServer, prefix: str, api: str
) -> None:
    proxy = _FirstBytes(("127.0.0.1", plain.port))
    try:
        url = (
            f"rediss+stream://127.0.0.1:{proxy.port}/0?ssl_ca_certs={tls.files.ca}"
            "&socket_connect_timeout=5"
        )
        with pytest.raises(ConfigurationError) as caught:
            publish_once(api, url, "t", "x", prefix=prefix)
        assert "does not speak TLS" in str(caught.value)
        assert proxy.pings() == 1  # redis-py's retries were refused without a probe
    finally:
        proxy.close()
