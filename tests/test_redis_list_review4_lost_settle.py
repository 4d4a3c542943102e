"""redis+list when the reply of a settlement is lost, against a real redis-server: the
server ran the ack, nack or hand-back, the connection dropped before its reply, and
brokerkit sent the script again. What the lost attempt settled is not stale, and is
applied once (one requeue, one dead letter)."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator

import pytest

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from tests.conftest import RedisTarget
from tests.proxies import Listener


class ReplyLosing(Listener):
    """A TCP proxy to ``target``. Once :attr:`trigger` is set, the first send of a client
    that holds it is forwarded, the server's answer awaited (so the server ran it), and
    the connection closed without passing the answer on; :attr:`fired` is then set."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.trigger: bytes | None = None
        self.fired = threading.Event()
        self._firing = threading.Lock()
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        self.keep(upstream)
        self.spawn(self._pipe, client, upstream)

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                readable, _, _ = select.select([client, upstream], [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client and self._fires(data):
                        upstream.sendall(data)
                        select.select([upstream], [], [], 10)  # the server has answered
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            pass  # closed under it
        finally:
            client.close()
            upstream.close()

    def _fires(self, data: bytes) -> bool:
        with self._firing:
            if self.trigger is None or self.fired.is_set() or self.trigger not in data:
                return False
            self.fired.set()
            return True


@pytest.fixture
def proxy(redis_target: RedisTarget) -> Iterator[ReplyLosing]:
    losing = ReplyLosing((redis_target.host, redis_target.port))
    try:
        yield losing
    finally:
        losing.close()


@pytest.fixture
def broker(proxy: ReplyLosing, redis_target: RedisTarget, prefix: str) -> Iterator[RedisListBroker]:
    url = f"redis+list://127.0.0.1:{proxy.port}/{redis_target.db}"
    with brokerkit.connect(url, prefix=prefix, visibility_timeout=30) as opened:
        assert isinstance(opened, RedisListBroker)
        yield opened


def _arm(proxy: ReplyLosing, broker: RedisListBroker) -> None:
    """The next SETTLE call loses its reply."""
    proxy.trigger = broker._scripts["SETTLE"].sha.encode()


@pytest.mark.parametrize("how", ["whole fetch", "one of two", "one after extend"])
def test_an_ack_whose_reply_was_lost_is_not_stale(
    proxy: ReplyLosing, broker: RedisListBroker, how: str
) -> None:
    broker.publish_many("orders", ["a", "b"])
    subscription = broker.subscribe("orders", prefetch=2)
    first, second = subscription.receive(timeout=5), subscription.receive(timeout=5)
    assert first is not None and second is not None
    if how == "one after extend":
        first.extend(60)  # a lease of its own (flag 2)
    _arm(proxy, broker)
    if how == "whole fetch":
        broker.ack(first, second)
    else:
        first.ack()
    assert proxy.fired.is_set()
    info = broker.inspect("orders")
    assert (info.length, info.in_flight) == (0, 0 if how == "whole fetch" else 1)
    if how != "whole fetch":
        second.ack()
    assert broker.inspect("orders").in_flight == 0
    subscription.close()


@pytest.mark.parametrize("delay", [None, 60.0])
def test_a_requeue_whose_reply_was_lost_is_applied_once(
    proxy: ReplyLosing, broker: RedisListBroker, delay: float | None
) -> None:
    broker.publish_many("orders", ["a", "b"])
    subscription = broker.subscribe("orders", prefetch=2)
    first, second = subscription.receive(timeout=5), subscription.receive(timeout=5)
    assert first is not None and second is not None
    _arm(proxy, broker)
    first.nack(delay=delay)
    assert proxy.fired.is_set()
    info = broker.inspect("orders")
    expected = (1, 0, 1) if delay is None else (0, 1, 1)
    assert (info.length, info.scheduled, info.in_flight) == expected
    second.ack()
    if delay is None:
        again = subscription.receive(timeout=5)
        assert again is not None
        assert (again.id, again.attempt) == (first.id, 2)
        again.ack()
    assert broker.inspect("orders").in_flight == 0
    subscription.close()


@pytest.mark.parametrize("reason", [None, "bad input"])
def test_a_dead_letter_whose_reply_was_lost_is_made_once(
    proxy: ReplyLosing, broker: RedisListBroker, reason: str | None
) -> None:
    broker.publish_many("orders", ["a"])
    subscription = broker.subscribe("orders")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    _arm(proxy, broker)
    delivery.nack(requeue=False, reason=reason)
    assert proxy.fired.is_set()
    info = broker.inspect("orders")
    assert (info.length, info.in_flight, info.dead_lettered) == (0, 0, 1)
    (dead,) = broker.consume("orders.dlq", timeout=0, limit=1)
    assert dead.id == delivery.id
    assert dead.message.headers["x-dead-letter-reason"] == (reason or "rejected")
    dead.ack()
    subscription.close()


def test_a_hand_back_whose_reply_was_lost_returns_each_delivery_once(
    proxy: ReplyLosing, broker: RedisListBroker
) -> None:
    ids = broker.publish_many("orders", ["a", "b", "c"])
    subscription = broker.subscribe("orders", prefetch=3)
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    _arm(proxy, broker)
    subscription.close()  # hands back the two it never returned
    assert proxy.fired.is_set()
    assert broker.inspect("orders").length == 2
    delivery.ack()
    with broker.subscribe("orders", prefetch=3) as other:
        got = [other.receive(timeout=5) for _ in range(2)]
        assert [(d.id, d.attempt) for d in got if d is not None] == [(ids[1], 1), (ids[2], 1)]
        broker.ack(*(d for d in got if d is not None))
    info = broker.inspect("orders")
    assert (info.length, info.in_flight) == (0, 0)
