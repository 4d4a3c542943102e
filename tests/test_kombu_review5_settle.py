"""kombu+amqp: an ack or nack made after the network cut the connection is not
reported done. RabbitMQ hands back every delivery of a lost connection, so such a
settle raises StaleDelivery (saying the connection was lost), the message comes back
once, and a dead letter is stored once; deliveries the subscription had buffered
from the dead connection are not handed out.

The network is cut by a proxy in front of the test RabbitMQ (both sides read an end
of stream). The broker's reaper reads the socket about once a second and may find
the cut before the ack does, which would hide the bug; so each test holds the
reading connection's lock (a reentrant lock: the test thread's own calls still go
through) from the cut to the settle, and the settle is the first to look.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

import brokerkit.aio
from brokerkit.exceptions import StaleDelivery
from tests.test_kombu_review5_proxy import Net, net, queue_depth, rabbitmq
from tests.waiting import wait_until

__all__ = ["net", "rabbitmq"]

#: Small bounds: nothing here should wait on the network for long.
_OPTIONS = {"heartbeat": 10, "reconnect_timeout": 5, "connect_timeout": 2}


@contextlib.contextmanager
def reaper_kept_out(broker: object) -> Iterator[None]:
    """Hold ``broker``'s reading connection (see the module's docstring)."""
    link = broker._reading_link  # type: ignore[attr-defined]
    with link.lock:
        yield


def cut_and_wait_for_requeue(net: Net, topic: str, waiting: int) -> None:
    """Cut the network; return once RabbitMQ has put ``waiting`` messages back."""
    net.proxy.cut()
    wait_until(
        lambda: queue_depth(net.queue(topic)) == waiting,
        f"RabbitMQ requeuing the {waiting} deliveries of the cut connection",
        within=10,
    )


def test_acks_after_a_cut_raise_stale_and_the_messages_come_back(net: Net) -> None:
    broker = net.broker(**_OPTIONS)
    broker.publish_many("cut", ["a", "b", "c"])
    subscription = broker.subscribe("cut", prefetch=3)
    held = [subscription.receive(timeout=5) for _ in range(3)]
    assert all(d is not None for d in held)
    with reaper_kept_out(broker):
        cut_and_wait_for_requeue(net, "cut", 3)
        outcomes = []
        for delivery in held:
            try:
                delivery.ack()
                outcomes.append("ok")
            except StaleDelivery as exc:
                outcomes.append(str(exc))
    assert all(o != "ok" for o in outcomes), (
        f"an ack RabbitMQ never recorded (the connection was cut) was reported done: {outcomes}"
    )
    assert all("connection" in o and "expired" not in o for o in outcomes), (
        f"StaleDelivery says the connection was lost, not that a lease expired: {outcomes}"
    )
    subscription.close()
    again = net.broker(direct=True).subscribe("cut")
    back = []
    while (delivery := again.receive(timeout=2)) is not None:
        back.append((delivery.payload, delivery.attempt))
        delivery.ack()
    assert sorted(back) == [(b"a", 2), (b"b", 2), (b"c", 2)]


def test_a_nack_on_the_last_attempt_after_a_cut_dead_letters_once(net: Net) -> None:
    broker = net.broker(max_deliveries=2, **_OPTIONS)
    message_id = broker.publish("dl", "x")
    subscription = broker.subscribe("dl")
    first = subscription.receive(timeout=5)
    assert first is not None
    first.nack()
    last = subscription.receive(timeout=5)
    assert last is not None and last.attempt == 2
    with reaper_kept_out(broker):
        cut_and_wait_for_requeue(net, "dl", 1)
        with pytest.raises(StaleDelivery, match="connection"):
            last.nack()  # the last attempt: it would be dead-lettered
    subscription.close()
    direct = net.broker(direct=True, max_deliveries=2)
    # Its third delivery is past max_deliveries: dead-lettered by the fetch.
    assert direct.subscribe("dl").receive(timeout=1) is None
    dead = direct.subscribe("dl.dlq")
    letters = []
    while (delivery := dead.receive(timeout=2)) is not None:
        letters.append(delivery.id)
        delivery.ack()
    assert letters == [message_id], f"one dead letter, not one per settle RabbitMQ lost: {letters}"


def test_deliveries_buffered_from_a_cut_connection_are_not_acked_twice(net: Net) -> None:
    broker = net.broker(**_OPTIONS)
    broker.publish_many("buf", list(range(6)))
    subscription = broker.subscribe("buf", prefetch=4)
    first = subscription.receive(timeout=5)
    assert first is not None
    first.ack()
    assert subscription.buffered == 3
    seen: list[tuple[int, int, str]] = []
    with reaper_kept_out(broker):
        cut_and_wait_for_requeue(net, "buf", 5)
        while (delivery := subscription.receive(timeout=3)) is not None:
            try:
                delivery.ack()
                outcome = "ok"
            except StaleDelivery:
                outcome = "stale"
            seen.append((delivery.body, delivery.attempt, outcome))
    acked = sorted(body for body, _, outcome in seen if outcome == "ok")
    assert acked == [1, 2, 3, 4, 5], f"each message acked once, none twice: {seen}"
    stale = [entry for entry in seen if entry[2] == "stale"]
    assert len(stale) <= 1, (
        f"once the cut is found, what the dead connection had buffered is not handed out: {seen}"
    )
    assert queue_depth(net.queue("buf")) == 0


def test_an_asyncio_ack_after_a_cut_raises_stale_saying_why(net: Net) -> None:
    """Under brokerkit.aio the ack runs in a worker thread: the reaper is kept out
    until the requeue, and whichever finds the cut first, the ack says why."""

    async def main() -> str:
        broker = await brokerkit.aio.connect(net.through_url, prefix=net.prefix, **_OPTIONS)
        net.made.append(broker.sync)  # (closed, and what it declared deleted, at the end)
        try:
            await broker.publish("acut", "a")
            subscription = await broker.subscribe("acut")
            delivery = await subscription.receive(timeout=5)
            assert delivery is not None
            with reaper_kept_out(broker.sync):
                cut_and_wait_for_requeue(net, "acut", 1)
            try:
                await delivery.ack()
            except StaleDelivery as exc:
                return str(exc)
            return "ok"
        finally:
            await broker.close()

    outcome = asyncio.run(main())
    assert "connection" in outcome and "was lost" in outcome and "expired" not in outcome, (
        f"the asyncio ack says that the connection was lost: {outcome}"
    )
