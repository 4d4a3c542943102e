"""A ``rediss+`` URL pointed at a plain (non-TLS) Redis port: the client's TLS hello
is read by Redis as the start of an inline command and never answered, so every
connection attempt waited its whole connect timeout (5 s) for the server's hello, the
client's own retries several times over, then failed with "nothing answered" (5 to 20
s, or minutes with a long ``socket_connect_timeout``). It is now a ConfigurationError
at once saying that the port does not speak TLS and what to do: a handshake that gets
no answer soon asks the port, on a second connection, for a plain PING.

A TLS server that is merely slow to answer its hello (held here by a proxy until the
plain PING has been tried on it) is still connected to over TLS."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

import brokerkit
from brokerkit.exceptions import ConfigurationError
from tests.proxies import Listener, pipe
from tests.redis_cluster import RedisClusterSet, SentinelSet
from tests.redis_server import RedisServer, publish_once
from tests.redis_tls import TLSRedisServer, require_tls_redis_server

SCHEMES = ["rediss+stream", "rediss+list", "rediss+pubsub"]
APIS = ["sync", "asyncio"]
#: Each attempt may wait this long: before, the failure took a multiple of it.
CONNECT_TIMEOUT = 60
#: The most seconds the failure may take (a hang guard, far above the probe's wait).
AT_ONCE = 30.0


@pytest.fixture(scope="module")
def tls() -> Iterator[TLSRedisServer]:
    with TLSRedisServer(require_tls_redis_server()) as server:
        yield server


@pytest.fixture(scope="module")
def plain() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _check(error: ConfigurationError, where: str) -> None:
    message = str(error)
    assert where in message
    assert "does not speak TLS" in message
    assert "redis+" in message  # what to do: a plain URL, or the server's TLS port


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_tls_to_a_plain_port_is_a_configuration_error_at_once(
    tls: TLSRedisServer, plain: RedisServer, prefix: str, scheme: str, api: str
) -> None:
    url = (
        f"{scheme}://127.0.0.1:{plain.port}/0?ssl_ca_certs={tls.files.ca}"
        f"&socket_connect_timeout={CONNECT_TIMEOUT}"
    )
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        publish_once(api, url, "t", "x", receive=scheme == "rediss+pubsub", prefix=prefix)
    assert time.monotonic() - started < AT_ONCE  # not a connect timeout, several times
    _check(caught.value, f"127.0.0.1:{plain.port}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", APIS)
def test_tls_to_plain_cluster_seeds_is_a_configuration_error_at_once(
    redis_cluster: RedisClusterSet, tls: TLSRedisServer, prefix: str, api: str
) -> None:
    seeds = ",".join(f"127.0.0.1:{node.port}" for node in redis_cluster.nodes[:2])
    url = (
        f"rediss+stream://{seeds}/0?cluster=true&ssl_ca_certs={tls.files.ca}"
        f"&socket_connect_timeout={CONNECT_TIMEOUT}"
    )
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        publish_once(api, url, "t", "x", prefix=prefix)
    assert time.monotonic() - started < AT_ONCE
    _check(caught.value, "127.0.0.1:")


class _SlowHello(Listener):
    """A proxy to a TLS server that holds the server's bytes of the first connection
    (its hello) until a second connection (the client's plain PING) has come and
    gone, then forwards them: a TLS server slow to answer."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.released = threading.Event()
        self.connections = 0
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        self.connections += 1
        upstream = socket.create_connection(self._target)
        self.keep(upstream)
        held = self.connections == 1
        self.spawn(pipe, client, upstream)
        self.spawn(self._pipe_after, upstream, client, self.released if held else None)
        if not held:
            self.spawn(self._release_after, client)

    def _release_after(self, probe: socket.socket) -> None:
        """Release the held hello once the probe's connection is closed (by the
        client, or by the server refusing its plain text)."""
        deadline = time.monotonic() + 30
        while probe.fileno() >= 0 and time.monotonic() < deadline:
            try:
                probe.settimeout(0.05)
                if probe.recv(1, socket.MSG_PEEK) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        self.released.set()

    @staticmethod
    def _pipe_after(
        source: socket.socket, sink: socket.socket, wait: threading.Event | None
    ) -> None:
        """:func:`pipe`, once ``wait`` (if any) is set (within 30 s: else nothing)."""
        if wait is None or wait.wait(30):
            pipe(source, sink)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", APIS)
def test_a_slow_tls_server_is_still_reached_over_tls(
    tls: TLSRedisServer, prefix: str, api: str
) -> None:
    proxy = _SlowHello(("127.0.0.1", tls.port))
    try:
        url = (
            f"rediss+list://127.0.0.1:{proxy.port}/0?ssl_ca_certs={tls.files.ca}"
            f"&socket_connect_timeout={CONNECT_TIMEOUT}"
        )
        publish_once(api, url, "t", "x", prefix=prefix)
        assert proxy.released.is_set()  # the hello was held until the PING was tried
    finally:
        proxy.close()
        with brokerkit.connect(tls.url("rediss+list"), prefix=prefix) as broker:
            broker.purge("t")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", APIS)
def test_tls_to_plain_sentinels_is_a_configuration_error_at_once(
    redis_sentinel: SentinelSet, tls: TLSRedisServer, prefix: str, api: str
) -> None:
    url = redis_sentinel.url(
        "rediss+list", ssl_ca_certs=str(tls.files.ca), socket_connect_timeout=str(CONNECT_TIMEOUT)
    )
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        publish_once(api, url, "t", "x", prefix=prefix)
    assert time.monotonic() - started < AT_ONCE
    _check(caught.value, "the sentinel at 127.0.0.1:")
