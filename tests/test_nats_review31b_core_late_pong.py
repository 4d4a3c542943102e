"""nats+core: a PONG that comes after its flush gave up (timed out, or cancelled)
leaves the connection working (review 31b).

nats-py (2.16) sets the result of the first future waiting for a PONG without asking
whether it was cancelled, and its own flush cancels that future on a timeout (as does
cancelling the flush: brokerkit's publish does so on close and on loss, an asyncio
caller when it cancels the publish). The late PONG then raised InvalidStateError in
nats-py's read loop, which ended it: nothing was read from the connection any more (no
message delivered, no request answered) while it still looked connected, and a flush
returned without a round trip. A proxy between the client and the real server holds
the server's PONGs back while a flush gives up, then lets them through: the connection
must still deliver what is published next.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import ConnectionFailed
from tests.nats_server import nats_address
from tests.proxies import Listener, pipe

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 20.0


class _HoldsPongs(Listener):
    """A TCP proxy to ``target`` that, while :attr:`hold` is set, stops forwarding what
    the server sends at the first chunk holding a PONG (:attr:`held` set) until
    :attr:`release` is set."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.hold = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        self.keep(upstream)
        self.spawn(pipe, client, upstream)
        self.spawn(pipe, upstream, client, self._holding)

    def _holding(self, data: bytes, first: bool) -> bytes:
        if self.hold.is_set() and b"PONG\r\n" in data:
            self.held.set()
            self.release.wait(GUARD)
        return data

    def let_go(self) -> None:
        self.hold.clear()
        self.release.set()

    def close(self) -> None:
        self.release.set()
        super().close()


def _url(proxy: _HoldsPongs, prefix: str, reconnect_timeout: int = 30) -> str:
    return (
        f"nats+core://127.0.0.1:{proxy.port}?prefix={prefix}&reconnect_timeout={reconnect_timeout}"
    )


def test_a_publish_whose_flush_timed_out_leaves_the_connection_delivering(
    nats_url: str,
) -> None:
    proxy = _HoldsPongs(nats_address(nats_url))
    prefix = f"r31p{uuid.uuid4().hex[:10]}"
    try:
        # (reconnect_timeout=1: the publish's flush waits 1 s for its PONG)
        with brokerkit.connect(_url(proxy, prefix, reconnect_timeout=1)) as broker:
            subscription = broker.subscribe("jobs")
            proxy.hold.set()
            with pytest.raises(ConnectionFailed, match="TimeoutError"):
                broker.publish("jobs", "unconfirmed")
            assert proxy.held.is_set()
            proxy.let_go()
            broker.publish("jobs", "next")
            got = []
            while (delivery := subscription.receive(timeout=GUARD)) is not None:
                got.append(delivery.body)
                if delivery.body == "next":
                    break
            assert got[-1:] == ["next"], got
    finally:
        proxy.close()


@pytest.mark.parametrize("cancelled", ["publish", "subscribe"])
def test_an_asyncio_call_cancelled_in_its_flush_leaves_the_connection_delivering(
    nats_url: str, cancelled: str
) -> None:
    proxy = _HoldsPongs(nats_address(nats_url))
    prefix = f"r31p{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        async with brokerkit.aio.connect(_url(proxy, prefix)) as broker:
            subscription = await broker.subscribe("jobs")
            proxy.hold.set()
            call = asyncio.ensure_future(
                broker.publish("jobs", "unconfirmed")
                if cancelled == "publish"
                else broker.subscribe("other")
            )
            assert await asyncio.to_thread(proxy.held.wait, GUARD)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            proxy.let_go()
            await asyncio.wait_for(broker.publish("jobs", "next"), GUARD)
            got = []
            while (delivery := await subscription.receive(timeout=GUARD)) is not None:
                got.append(delivery.body)
                if delivery.body == "next":
                    break
            assert got[-1:] == ["next"], got

    try:
        asyncio.run(main())
    finally:
        proxy.close()
