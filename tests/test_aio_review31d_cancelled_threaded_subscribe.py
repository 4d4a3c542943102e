"""The thread adapter: a subscribe whose caller is cancelled while its worker thread
runs the sync subscribe leaves nothing subscribed that the broker does not list
(review 31).

A worker thread cannot be stopped: cancelled (``wait_for`` running out, ``task.cancel()``)
while kombu+amqp waited for RabbitMQ's ``queue.declare-ok``, the thread's subscribe went
on and made its reader all the same, which the sync broker kept live (its queue bound
again at every rebind round) until the broker closed, with no subscription to close it.
The slow declare is played by :class:`HoldDeclare`, a proxy in front of the real
RabbitMQ that holds the server's first ``queue.declare-ok`` once armed, until released.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit.aio
from brokerkit._url import BrokerURL
from brokerkit.aio import ThreadedAsyncBroker
from tests.kombu_rabbitmq import delete_names, rabbitmq, raw_connection
from tests.proxies import Listener
from tests.test_kombu_review31_blocked_publish import _end, _frames
from tests.waiting import wait_until

__all__ = ["rabbitmq"]

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 30.0
#: queue.declare-ok (class 50, method 11).
_DECLARE_OK = struct.pack(">HH", 50, 11)


class HoldDeclare(Listener):
    """A proxy to RabbitMQ that, once :attr:`armed`, holds the next ``queue.declare-ok``
    the server sends (and what follows it on that connection), says so (:attr:`held`),
    and forwards it once :attr:`released`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.armed = threading.Event()
        self.held = threading.Event()
        self.released = threading.Event()
        #: The kombu+amqp URL through it.
        self.url = ""
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        self.keep(upstream)
        self.spawn(self._up, client, upstream)
        self.spawn(self._down, upstream, client)

    def close(self) -> None:
        self.released.set()
        for sock in list(self._sockets):
            _end(sock)
        super().close()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _end(upstream)

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        buffer = bytearray()
        try:
            while data := upstream.recv(65536):
                buffer += data
                for frame in _frames(buffer):
                    if self.armed.is_set() and frame[0] == 1 and frame[7:11] == _DECLARE_OK:
                        self.armed.clear()
                        self.held.set()
                        self.released.wait(GUARD)
                    client.sendall(frame)
        except OSError:
            pass
        finally:
            _end(client)


@pytest.fixture
def proxy(rabbitmq: str) -> Iterator[HoldDeclare]:
    parsed = BrokerURL.parse(rabbitmq)
    made = HoldDeclare((parsed.host or "127.0.0.1", parsed.port or 5672))
    made.url = f"kombu+amqp://{parsed.username}:{parsed.password}@127.0.0.1:{made.port}/"
    try:
        yield made
    finally:
        made.close()


def _consumers(queue: str) -> int:
    """How many consumers RabbitMQ lists on ``queue`` (a passive declare)."""
    with raw_connection() as connection:
        channel = connection.channel()
        _, _, consumers = channel.queue_declare(queue, passive=True)
        channel.close()
        return int(consumers)


def test_a_subscribe_cancelled_while_its_thread_declares_is_closed_once_made(
    proxy: HoldDeclare,
) -> None:
    asyncio.run(_cancelled_subscribe(proxy))


async def _cancelled_subscribe(proxy: HoldDeclare) -> None:
    broker = await brokerkit.aio.connect(proxy.url, prefix=f"bka31d-{uuid.uuid4().hex[:10]}")
    assert isinstance(broker, ThreadedAsyncBroker)
    try:
        await _cancel_and_look(proxy, broker)
    finally:
        proxy.released.set()  # never leave the thread held, whatever failed
        await broker.close()
        declared = broker.sync.declared  # type: ignore[attr-defined]
        delete_names(set(declared.exchanges), set(declared.queues))


async def _cancel_and_look(proxy: HoldDeclare, broker: ThreadedAsyncBroker) -> None:
    sync: Any = broker.sync
    topic, group = "orders", "given-up"
    await broker.publish(topic, b"first")  # (the topic declared: next comes the group's queue)

    proxy.armed.set()
    subscribing = asyncio.create_task(broker.subscribe(topic, group=group, prefetch=10))
    assert await asyncio.to_thread(proxy.held.wait, GUARD), "the subscribe declared nothing"
    subscribing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await subscribing
    proxy.released.set()

    # The thread's subscribe ends (it notes the group last), then what it made is closed.
    await asyncio.to_thread(
        wait_until, lambda: group in sync._groups.get(topic, ()), "the thread's subscribe"
    )
    await asyncio.to_thread(
        wait_until,
        lambda: not [r for r in list(sync._readers) if not r.retiring],
        "the cancelled subscribe's reader to be closed",
        15.0,
    )

    # Nothing consumes from the group's queue: what is published waits for its next reader.
    queue = f"{sync.options.prefix}|{topic}|{group}"
    await broker.publish(topic, b"second")
    assert await asyncio.to_thread(_consumers, queue) == 0
    async with await broker.subscribe(topic, group=group) as subscription:
        delivery = await subscription.receive(timeout=GUARD)
        assert delivery is not None and delivery.message.body == b"second"
        await delivery.ack()
