"""NATS: what the server leased to an inbox a reader moved from is handed back, not
dropped (review 33).

A reader whose ``no_wait`` pull the group's ``MaxAckPending`` held up moves to a new
inbox, which makes the server drop the pull. It ended the old inbox's subscription
with nats-py's ``unsubscribe``, which drops at once what is still on its way: a
message the server leased to the pull just before it heard of the move reached the
client after that and was thrown away, held by nobody until AckWait (an attempt
counted that no handler saw). The old inbox is now drained: such a message is a
straggler, handed back (``-NAK``) at the next fetch.

To have the server lease to the pull just before the move, the reader's broker is
behind a proxy (:class:`HoldProxy`) that holds back what the server sends it until
the client sends an ``UNSUB``; the lease is made while it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import nats as nats_py
import pytest

from brokerkit.backends.nats import _reader
from brokerkit.backends.nats._wire import consumer_name
from tests.nats_server import nats, nats_address
from tests.test_nats_review33_max_ack_pending import _make_group
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


class HoldProxy:
    """A TCP proxy on a free local port in front of ``upstream`` (one connection):
    after :meth:`hold`, what the server sends is held back until the client sends an
    ``UNSUB``, and then passed on (after the ``UNSUB`` reached the server)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._holding = False
        self.held = b""
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            client, _ = self._listener.accept()
            upstream = socket.create_connection(self._upstream)
            self._sockets += [client, upstream]
            self._spawn(self._to_server, client, upstream)
            self._spawn(self._to_client, upstream, client)

    def hold(self) -> None:
        with self._lock:
            self._holding = True

    def _to_server(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                upstream.sendall(data)
                with self._lock:
                    if self._holding and b"UNSUB" in data:
                        self._holding = False
                        client.sendall(self.held)

    def _to_client(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                with self._lock:
                    if self._holding:
                        self.held += data
                        continue
                    client.sendall(data)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(GUARD)


@pytest.fixture
def proxy(nats_url: str) -> Iterator[HoldProxy]:
    started = HoldProxy(nats_address(nats_url))
    try:
        yield started
    finally:
        started.close()


def _waiting_pulls(url: str, stream: str, durable: str) -> int:
    async def ask() -> int:
        nc = await nats_py.connect(url)
        try:
            info = await nc.jetstream().consumer_info(stream, durable)
            return int(info.num_waiting or 0)
        finally:
            await nc.close()

    return asyncio.run(ask())


def test_a_message_leased_to_the_inbox_moved_from_is_handed_back(
    nats: Callable[..., Any],
    nats_url: str,
    nats_prefix: str,
    proxy: HoldProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (time enough for the lease to be made, held back, before the reader moves)
    monkeypatch.setattr(_reader, "_SLACK", 5.0)
    broker = nats()
    broker.publish("other", b"makes the stream")
    _make_group(nats_url, nats_prefix, "jobs", "g", max_ack_pending=2)
    holder = broker.subscribe("jobs", group="g", prefetch=2)
    moving = nats(url=f"nats://127.0.0.1:{proxy.port}")
    reader = moving.subscribe("jobs", group="g")
    broker.publish_many("jobs", [b"m0", b"m1", b"m2"])
    held = [holder.receive(timeout=GUARD) for _ in range(2)]
    assert all(delivery is not None for delivery in held)
    proxy.hold()
    got: list[Any] = []
    # The group holds MaxAckPending: this pull gets nothing and is not ended.
    receiving = threading.Thread(target=lambda: got.append(reader.receive(timeout=0)))
    receiving.start()
    try:
        durable = consumer_name("jobs", "g")
        wait_until(
            lambda: _waiting_pulls(nats_url, nats_prefix, durable) > 0,
            "the reader's pull to wait on the server",
            within=GUARD,
        )
        held[0].ack()  # (makes room: m2 is leased to that pull, held back by the proxy)
        wait_until(lambda: b"MSG" in proxy.held, "the lease to reach the proxy", within=GUARD)
    finally:
        receiving.join(GUARD)
    assert got == [None]
    delivery = reader.receive(timeout=GUARD)
    assert delivery is not None, "the message leased to the old inbox was dropped"
    assert (delivery.body, delivery.attempt) == (b"m2", 2)  # (handed back once)
    delivery.ack()
    held[1].ack()
