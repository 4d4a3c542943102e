"""kombu+amqp: what a subscription fetched from a connection that is then lost, and
did not hand out yet, is never handed out once the loss is known. RabbitMQ put those
deliveries back in the queue when the connection died: handed out, each would be
processed, its ack would raise StaleDelivery, and it would come again (processed
twice). Instead the subscription drops them (marked settled here, reported once to
``brokerkit_on_lease_lost``) and the next receives bring them again from RabbitMQ,
redelivered, under the sync API and under brokerkit.aio (whose buffer is the asyncio
subscription's, in front of the thread adapter).

The network is cut by the proxy of :mod:`tests.test_kombu_review5_proxy`. Nothing
waits by sleeping: each test polls RabbitMQ until it has requeued the cut
connection's deliveries, and the broker until it has found the connection lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import StaleDelivery
from tests.conftest import LostLeases
from tests.test_kombu_review5_proxy import Net, net, queue_depth, rabbitmq
from tests.waiting import wait_until

__all__ = ["net", "rabbitmq"]  # fixtures

#: Small bounds: nothing here should wait on the network for long.
_OPTIONS = {"heartbeat": 10, "reconnect_timeout": 5, "connect_timeout": 2}
#: Published, fetched at most this many at a time: one received, three buffered.
_MESSAGES = 6
_PREFETCH = 4


def requeued(net: Net, topic: str, waiting: int) -> None:
    """Return once RabbitMQ has ``waiting`` messages ready in ``topic``'s queue (it put
    back what the cut connection held)."""
    wait_until(
        lambda: queue_depth(net.queue(topic)) == waiting,
        f"RabbitMQ requeuing the deliveries of the cut connection ({waiting} ready)",
        within=10,
    )


def found_lost(link: Any, before: int) -> None:
    """Return once the broker has found its reading connection lost (its generation
    moved on from ``before``; the reaper reads the socket about once a second) and the
    thread that found it has let go of the connection."""
    wait_until(lambda: link.generation != before, "the broker finding the cut", within=10)
    with link.lock:
        pass


def check_redelivered(
    buffered: list[int], seen: list[tuple[int, int, bool, str]], lost: list[Any]
) -> None:
    """Every message after the first was handed out once and acked, none stale; those
    that were buffered at the cut came again from RabbitMQ, redelivered; and each of
    those buffered deliveries was reported lost once, marked settled."""
    assert [entry for entry in seen if entry[3] != "ok"] == [], (
        f"a delivery of the dead connection was handed out (its ack was stale): {seen}"
    )
    assert sorted(body for body, *_ in seen) == list(range(1, _MESSAGES)), (
        f"each message after the first handed out once, none twice: {seen}"
    )
    again = {body: (attempt, redelivered) for body, attempt, redelivered, _ in seen}
    assert all(again[body] == (2, True) for body in buffered), (
        f"the buffered messages came again from RabbitMQ, redelivered: {seen}"
    )
    assert sorted(d.body for d in lost) == buffered, (
        f"the dropped deliveries were reported lost, once each: {[d.body for d in lost]}"
    )
    assert all(d.settled for d in lost), "a dropped delivery is marked settled"


def subscribed_with_buffer(broker: Any, topic: str) -> tuple[Any, list[int]]:
    """A subscription to ``topic`` (with :data:`_MESSAGES` published) that received
    and acked the first and buffered the next ones; the bodies it buffered."""
    broker.publish_many(topic, list(range(_MESSAGES)))
    subscription = broker.subscribe(topic, prefetch=_PREFETCH)
    first = subscription.receive(timeout=5)
    assert first is not None and first.body == 0
    first.ack()
    buffered = [d.body for d in subscription.buffered_deliveries()]
    assert buffered == list(range(1, _PREFETCH))
    return subscription, buffered


def received(subscription: Any) -> list[tuple[int, int, bool, str]]:
    """Receive and ack until nothing more comes: (body, attempt, redelivered, outcome)."""
    seen = []
    while (delivery := subscription.receive(timeout=2)) is not None:
        try:
            delivery.ack()
            outcome = "ok"
        except StaleDelivery:
            outcome = "stale"
        seen.append((delivery.body, delivery.attempt, delivery.redelivered, outcome))
    return seen


def test_the_buffer_of_a_connection_the_reaper_found_lost_is_not_handed_out(
    net: Net, lost_leases: LostLeases, caplog: pytest.LogCaptureFixture
) -> None:
    broker = net.broker(**_OPTIONS)
    subscription, buffered = subscribed_with_buffer(broker, "buf")
    link = broker._reading_link
    before = link.generation
    with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
        net.proxy.cut()
        requeued(net, "buf", _MESSAGES - 1)
        found_lost(link, before)
        seen = received(subscription)
    check_redelivered(buffered, seen, lost_leases.lost)
    assert queue_depth(net.queue("buf")) == 0
    warnings = [r for r in caplog.records if "had fetched but not handed out" in r.message]
    assert len(warnings) == 1 and "connection" in warnings[0].message, caplog.text
    ids = ",".join(d.id for d in lost_leases.lost)
    assert getattr(warnings[0], "message_id", None) == ids, "the warning names them"


def test_the_buffer_of_a_connection_another_fetch_found_lost_is_not_handed_out(
    net: Net, lost_leases: LostLeases
) -> None:
    """Another subscription's fetch on the same broker finds the connection lost (and
    reconnects): the buffer is dropped then, not at the reaper's next sweep (stopped
    here, so that the fetch is what finds the cut)."""
    broker = net.broker(**_OPTIONS)
    broker._reaper.stop()
    other = broker.subscribe("other")
    subscription, buffered = subscribed_with_buffer(broker, "buf")
    link = broker._reading_link
    before = link.generation
    net.proxy.cut()
    requeued(net, "buf", _MESSAGES - 1)
    assert other.receive(timeout=0) is None
    assert link.generation != before, "the other subscription's fetch found the cut"
    seen = received(subscription)
    check_redelivered(buffered, seen, lost_leases.lost)
    assert queue_depth(net.queue("buf")) == 0


def test_the_buffer_of_a_channel_rabbitmq_closed_is_not_handed_out(
    net: Net, lost_leases: LostLeases
) -> None:
    """RabbitMQ closes the subscription's channel (here: an ack of a delivery tag it
    never gave, sent on it behind brokerkit's back); the ack that finds it closed
    raises StaleDelivery, and what the subscription buffered from it is dropped."""
    broker = net.broker(**_OPTIONS)
    broker.publish_many("chan", list(range(_MESSAGES)))
    subscription = broker.subscribe("chan", prefetch=_PREFETCH)
    first = subscription.receive(timeout=5)
    assert first is not None and first.body == 0
    buffered = [d.body for d in subscription.buffered_deliveries()]
    assert buffered == list(range(1, _PREFETCH))
    link = broker._reading_link
    with link.lock:
        subscription.state.channel.basic_ack(1_000_000)
    with pytest.raises(StaleDelivery, match="closed the channel"):
        first.ack()
    seen = received(subscription)
    assert [entry for entry in seen if entry[3] != "ok"] == [], seen
    assert sorted(body for body, *_ in seen) == list(range(_MESSAGES)), seen
    again = {body: (attempt, redelivered) for body, attempt, redelivered, _ in seen}
    assert all(again[body] == (2, True) for body in [0, *buffered]), seen
    assert sorted(d.body for d in lost_leases.lost) == [0, *buffered]
    assert queue_depth(net.queue("chan")) == 0


def test_asyncio_the_buffer_of_a_lost_connection_is_not_handed_out(
    net: Net, lost_leases: LostLeases
) -> None:
    """Under brokerkit.aio the buffer is the asyncio subscription's: it is dropped from
    there, and the deliveries reported lost are those the application would have got."""

    async def main() -> tuple[list[int], list[tuple[int, int, bool, str]]]:
        broker = await brokerkit.aio.connect(net.through_url, prefix=net.prefix, **_OPTIONS)
        net.made.append(broker.sync)  # (closed, and what it declared deleted, at the end)
        try:
            await broker.publish_many("abuf", list(range(_MESSAGES)))
            subscription = await broker.subscribe("abuf", prefetch=_PREFETCH)
            first = await subscription.receive(timeout=5)
            assert first is not None and first.body == 0
            await first.ack()
            buffered = [d.body for d in subscription.buffered_deliveries()]
            assert buffered == list(range(1, _PREFETCH))
            link = broker.sync._reading_link
            before = link.generation
            net.proxy.cut()
            await asyncio.to_thread(requeued, net, "abuf", _MESSAGES - 1)
            await asyncio.to_thread(found_lost, link, before)
            seen = []
            while (delivery := await subscription.receive(timeout=2)) is not None:
                try:
                    await delivery.ack()
                    outcome = "ok"
                except StaleDelivery:
                    outcome = "stale"
                seen.append((delivery.body, delivery.attempt, delivery.redelivered, outcome))
            return buffered, seen
        finally:
            await broker.close()

    buffered, seen = asyncio.run(main())
    check_redelivered(buffered, seen, lost_leases.lost)
    assert all(isinstance(d, brokerkit.aio.AsyncDelivery) for d in lost_leases.lost)
    assert queue_depth(net.queue("abuf")) == 0


def test_the_buffer_whose_leases_ran_out_is_not_handed_out(
    net: Net, lost_leases: LostLeases
) -> None:
    """No cut: the buffered deliveries' visibility timeout runs out while they wait in
    the buffer; the reaper gives them back to RabbitMQ and drops them from the buffer
    in the same sweep, reported lost, so that none is handed out stale."""
    # 3 s, not 1: what comes after the drop is fetched under the same lease, and on a
    # loaded machine 1 s ran out between a receive and its ack (an ack stale, rightly)
    broker = net.broker(visibility_timeout=3, **_OPTIONS)
    subscription, buffered = subscribed_with_buffer(broker, "expired")
    wait_until(
        lambda: not subscription.buffered_deliveries(),
        "the reaper dropping the buffered deliveries whose leases ran out",
        within=60,  # a hang guard: a 3 s lease, then the reaper's sweep, on a loaded machine
    )
    seen = received(subscription)
    check_redelivered(buffered, seen, lost_leases.lost)
    assert queue_depth(net.queue("expired")) == 0
