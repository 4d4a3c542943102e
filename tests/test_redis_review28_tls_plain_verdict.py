"""A plain (non-TLS) port reached over TLS is a ConfigurationError at once.

7974ae9 let OpenSSL's "not TLS" errors ride out as a lost connection when any host of
the URL had shaken TLS hands with this process, and the probe's own verdict ("does not
speak TLS") too, though the probe only ever runs for a port that never did: a Sentinel
URL whose sentinels speak TLS and whose master is plain was retried for the whole
``reconnect_timeout``, then "lost the connection". The probe's verdict now always
stands, and OpenSSL's errors are judged by the server the failing connection names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brokerkit.exceptions import ConfigurationError
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
