"""The plain-PING probe of a TLS connect (a rediss+ URL on a plain port fails at once)
must not refuse a server that does speak TLS, nor cost an established deployment a
second connection per new connection.

- A port that takes both TLS and plain text (ElastiCache's "preferred" transit
  encryption, a router on the first byte) answers the probe's PING: a TLS answer that
  came later than the probe's wait (a long round trip) was a permanent
  ConfigurationError ("does not speak TLS"), even, under asyncio, when the handshake
  had already ended while the probe was out. A handshake that ends soon after the
  probe is trusted over it.
- A host:port this process has shaken TLS hands with is not probed again: each probe
  was a second connection (and a WARNING line in the TLS server's log) for every new
  connection whose handshake took longer than the probe's wait.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.proxies import Listener, pipe
from tests.redis_server import _free_port, publish_once
from tests.redis_tls import TLSRedisServer, require_tls_redis_server

APIS = ["sync", "asyncio"]
#: The URL's connect timeout: the probe waits a fraction of it.
CONNECT_TIMEOUT = 10


class DualModeServer(TLSRedisServer):
    """A redis-server with a TLS port (:attr:`port`) and a plain one (:attr:`plain_port`)."""

    def __init__(self, binary: str) -> None:
        self.plain_port = _free_port()
        super().__init__(binary)

    def _listen(self) -> list[str]:
        return [*super()._listen()[2:], "--port", str(self.plain_port)]


class Router(Listener):
    """One port for TLS and plain text, as a dual-mode server has: a connection whose
    first byte opens a TLS hello goes to ``tls_port``, any other to ``plain_port``
    (``tls_port`` too when None). The first answer of each TLS connection is held
    until a plain connection (a probe) that came after it has ended, or for ``hold``
    seconds (a long round trip)."""

    def __init__(self, tls_port: int, plain_port: int | None, *, hold: float) -> None:
        self._tls_port = tls_port
        self._plain_port = plain_port
        self._hold = hold
        self._changed = threading.Condition()
        self.tls_connections = 0
        self.plain_connections = 0
        self.plain_ended = 0
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        self.spawn(self._route, client)

    def _route(self, client: socket.socket) -> None:
        try:
            client.settimeout(30)
            head = client.recv(1, socket.MSG_PEEK)
            client.settimeout(None)
        except OSError:
            return
        tls = head == b"\x16"
        with self._changed:
            if tls:
                self.tls_connections += 1
                probes_before = self.plain_ended
            else:
                self.plain_connections += 1
        port = self._tls_port if tls or self._plain_port is None else self._plain_port
        try:
            upstream = socket.create_connection(("127.0.0.1", port))
        except OSError:
            client.close()
            return
        self.keep(upstream)
        self.spawn(pipe, client, upstream)
        if tls:
            pipe(upstream, client, functools.partial(self._held, probes_before))
        else:
            try:
                pipe(upstream, client)
            finally:
                with self._changed:
                    self.plain_ended += 1
                    self._changed.notify_all()

    def _held(self, probes_before: int, data: bytes, first: bool) -> bytes:
        """A TLS connection's first answer, once a probe that came after it has ended
        (or ``hold`` seconds have passed)."""
        if first:
            with self._changed:
                self._changed.wait_for(lambda: self.plain_ended > probes_before, self._hold)
        return data


@pytest.fixture(scope="module")
def dual() -> Iterator[DualModeServer]:
    with DualModeServer(require_tls_redis_server()) as server:
        yield server


def _url(port: int, ca: object, scheme: str = "rediss+list") -> str:
    return (
        f"{scheme}://127.0.0.1:{port}/0?ssl_ca_certs={ca}&socket_connect_timeout={CONNECT_TIMEOUT}"
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scheme", ["rediss+list", "rediss+stream", "rediss+pubsub"])
def test_a_dual_mode_port_with_a_late_tls_answer_is_reached_over_tls(
    dual: DualModeServer, prefix: str, api: str, scheme: str
) -> None:
    # every TLS answer comes 2 s late (a long round trip), or once the probe is answered
    router = Router(dual.port, dual.plain_port, hold=2.0)
    try:
        url = _url(router.port, dual.files.ca, scheme)
        publish_once(api, url, "t", "x", receive=scheme == "rediss+pubsub", prefix=prefix)
        assert router.plain_connections >= 1  # the probe was made, and answered PONG
    finally:
        router.close()
        admin = dual.client()
        for key in admin.scan_iter(f"{prefix}*"):
            admin.delete(key)
        admin.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("api", APIS)
def test_a_port_spoken_tls_with_is_not_probed_again(prefix: str, api: str) -> None:
    with TLSRedisServer(require_tls_redis_server()) as server:
        # every TLS answer comes 2 s late (a long round trip), unless a probe comes
        router = Router(server.port, None, hold=2.0)
        try:
            url = _url(router.port, server.files.ca)
            publish_once(api, url, "t", "x", prefix=prefix)  # the first connect probes
            probes = router.plain_connections
            assert probes >= 1
            publish_once(api, url, "t", "y", prefix=prefix)
            publish_once(api, url, "t", "z", prefix=prefix)
            assert router.plain_connections == probes, "probed again"
            assert router.tls_connections >= 3
            warnings = (server.directory / "redis.log").read_text()
            assert warnings.count("Error accepting a client connection") <= probes
        finally:
            router.close()
