"""nats+core: a publish whose connection drops during its flush raises ConnectionFailed
as the loss is noticed, rather than wait out ``reconnect_timeout`` (review 31).

nats-py forgets the PONGs it waits for when it reconnects: the flush's wait, bounded by
what was left of ``reconnect_timeout``, lasted all of it though the connection was back
within a moment. A proxy in front of the real server drops the connection as the
client sends the publish's messages (and the PING after them), and lets it reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import ConnectionFailed
from tests.nats_server import nats_address
from tests.proxies import Listener, pipe
from tests.waiting import call_in_thread

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 20.0
#: Beyond the guard: a flush nobody ends waits it out.
RECONNECT = 120


class _CutsAtMark(Listener):
    """A TCP proxy to ``target`` that drops a connection (both ways, nothing of that
    chunk forwarded) once the client sends :attr:`mark` (once, then it is cleared);
    new connections pass."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.mark: bytes | None = None
        self.cut = threading.Event()
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        self.keep(upstream)

        def passing(data: bytes, first: bool) -> bytes:
            mark = self.mark
            if mark is not None and mark in data:
                self.mark = None
                # set before the cut: the publish may see the cut, fail and be checked
                # before this thread runs on
                self.cut.set()
                for sock in (client, upstream):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return b""
            return data

        self.spawn(pipe, client, upstream, passing)
        self.spawn(pipe, upstream, client)


def _url(proxy: _CutsAtMark, prefix: str) -> str:
    return f"nats+core://127.0.0.1:{proxy.port}?prefix={prefix}&reconnect_timeout={RECONNECT}"


def test_a_sync_publish_whose_connection_drops_in_its_flush_raises_connection_failed(
    nats_url: str,
) -> None:
    proxy = _CutsAtMark(nats_address(nats_url))
    prefix = f"r31l{uuid.uuid4().hex[:10]}"
    try:
        with brokerkit.connect(_url(proxy, prefix)) as broker:
            broker.publish("warm", "up")  # (the connection made)
            proxy.mark = f" {prefix}.jobs ".encode()
            thread, raised = call_in_thread(lambda: broker.publish("jobs", "cut"))
            thread.join(GUARD)
            assert proxy.cut.is_set(), "the proxy never saw the publish"
            assert not thread.is_alive(), "the publish waited on after the connection dropped"
            assert len(raised) == 1, "the publish returned as if the server had it"
            assert isinstance(raised[0], ConnectionFailed), repr(raised[0])
            assert "lost" in str(raised[0])
            broker.publish("jobs", "after")  # the connection is back
    finally:
        proxy.close()


def test_an_asyncio_publish_whose_connection_drops_in_its_flush_raises_connection_failed(
    nats_url: str,
) -> None:
    proxy = _CutsAtMark(nats_address(nats_url))
    prefix = f"r31l{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        async with brokerkit.aio.connect(_url(proxy, prefix)) as broker:
            await broker.publish("warm", "up")
            proxy.mark = f" {prefix}.jobs ".encode()
            with pytest.raises(ConnectionFailed, match="lost"):
                await asyncio.wait_for(broker.publish("jobs", "cut"), GUARD)
            assert proxy.cut.is_set()
            await asyncio.wait_for(broker.publish("jobs", "after"), GUARD)

    try:
        asyncio.run(main())
    finally:
        proxy.close()
