"""The memory backend's own semantics (the contract suite checks the shared promises)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

import brokerkit
from brokerkit import (
    AlreadySettled,
    BrokerClosed,
    DeliveryError,
    InvalidTopic,
    ManualClock,
    StaleDelivery,
)
from brokerkit._subscription import Subscription
from brokerkit.backends.memory import MemoryBroker


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def broker(clock: ManualClock) -> brokerkit.Broker:
    with brokerkit.connect("memory://", clock=clock, visibility_timeout=10) as broker:
        yield broker


def test_body_headers_and_id_come_back(broker: brokerkit.Broker) -> None:
    msg_id = broker.publish("order.created", {"orderId": 123}, headers={"trace-id": "abc"})
    delivery = broker.subscribe("order.created").receive(timeout=0)
    assert delivery is not None
    assert (delivery.id, delivery.body, dict(delivery.headers)) == (
        msg_id,
        {"orderId": 123},
        {"trace-id": "abc"},
    )
    assert (delivery.attempt, delivery.redelivered, delivery.topic) == (1, False, "order.created")


def test_unsettled_delivery_comes_back_after_the_visibility_timeout(
    broker: brokerkit.Broker, clock: ManualClock
) -> None:
    broker.publish("t", "x")
    first = broker.subscribe("t").receive(timeout=0)
    other = broker.subscribe("t")
    assert other.receive(timeout=0) is None
    clock.advance(9.9)
    assert other.receive(timeout=0) is None
    clock.advance(0.1)
    second = other.receive(timeout=0)
    assert second is not None and second.id == first.id  # type: ignore[union-attr]
    assert (second.attempt, second.redelivered) == (2, True)
    with pytest.raises(StaleDelivery):
        first.ack()  # type: ignore[union-attr]
    second.ack()  # the late ack did not take the new holder's delivery
    assert broker.inspect("t").in_flight == 0


def test_extend_renews_the_lease(broker: brokerkit.Broker, clock: ManualClock) -> None:
    broker.publish("t", "x")
    held = broker.subscribe("t").receive(timeout=0)
    other = broker.subscribe("t")
    for _ in range(5):
        clock.advance(8)
        held.extend()  # type: ignore[union-attr]
        assert other.receive(timeout=0) is None
    held.ack()  # type: ignore[union-attr]


def test_a_blocked_receive_wakes_when_a_lease_runs_out(
    broker: brokerkit.Broker, clock: ManualClock
) -> None:
    broker.publish("t", "x")
    assert broker.subscribe("t").receive(timeout=0) is not None
    got: list[brokerkit.Delivery | None] = []
    waiter = threading.Thread(target=lambda: got.append(broker.subscribe("t").receive(timeout=30)))
    waiter.start()
    clock.advance(11)
    waiter.join(30)
    assert got and got[0] is not None and got[0].attempt == 2


def test_max_deliveries_then_dead_letter_with_the_reason(clock: ManualClock) -> None:
    with brokerkit.connect("memory://", clock=clock, max_deliveries=2) as broker:
        broker.publish("pay", "poison")
        sub = broker.subscribe("pay")
        sub.receive(timeout=0).nack()  # type: ignore[union-attr]
        second = sub.receive(timeout=0)
        assert second is not None and second.attempt == 2
        second.nack()
        assert sub.receive(timeout=0) is None
        dead = broker.subscribe(broker.dead_letter_topic("pay")).receive(timeout=0)
        assert dead is not None and dead.body == "poison" and dead.id == second.id
        assert dead.headers["x-dead-letter-reason"] == "max_deliveries"
        assert dead.headers["x-original-topic"] == "pay"
        assert broker.inspect("pay").dead_lettered == 1


def test_nack_without_requeue_dead_letters_at_once(broker: brokerkit.Broker) -> None:
    broker.publish("pay", "bad")
    broker.subscribe("pay").receive(timeout=0).nack(requeue=False)  # type: ignore[union-attr]
    dead = broker.subscribe("pay.dlq").receive(timeout=0)
    assert dead is not None and dead.headers["x-dead-letter-reason"] == "rejected"


def test_groups_fan_out_and_members_compete(broker: brokerkit.Broker) -> None:
    broker.publish_many("orders", range(10))
    email_a = broker.subscribe("orders", group="email", prefetch=3)
    email_b = broker.subscribe("orders", group="email")
    sms = broker.subscribe("orders", group="sms", prefetch=100)
    email_seen = []
    for sub in (email_a, email_b) * 10:
        delivery = sub.receive(timeout=0)
        if delivery is not None:
            email_seen.append(delivery.body)
            delivery.ack()
    sms_seen = [d.body for d in iter(lambda: sms.receive(timeout=0), None)]
    assert sorted(email_seen) == list(range(10))
    assert sms_seen == list(range(10))


def test_a_new_group_replays_from_earliest_latest_or_an_offset(broker: brokerkit.Broker) -> None:
    broker.publish_many("log", ["a", "b", "c"])
    earliest = broker.subscribe("log", group="g1", start="earliest")
    latest = broker.subscribe("log", group="g2", start="latest")
    middle = broker.subscribe("log", group="g3", start="1")
    broker.publish("log", "d")
    assert [d.body for d in iter(lambda: earliest.receive(timeout=0), None)] == ["a", "b", "c", "d"]
    assert [d.body for d in iter(lambda: latest.receive(timeout=0), None)] == ["d"]
    assert [d.body for d in iter(lambda: middle.receive(timeout=0), None)] == ["b", "c", "d"]


def test_pattern_subscription_gets_matching_topics_only(broker: brokerkit.Broker) -> None:
    broker.publish("chat:room:1", "before")
    room = broker.subscribe("chat:room:*", pattern=True)
    broker.publish("chat:room:1", "hi 1")
    broker.publish("chat:room:2", "hi 2")
    broker.publish("chat:lobby", "not me")
    got = sorted((d.topic, d.body) for d in iter(lambda: room.receive(timeout=0), None))
    assert got == [("chat:room:1", "hi 1"), ("chat:room:2", "hi 2")]


def test_deliveries_of_a_closed_pattern_subscription_can_still_be_settled(
    broker: brokerkit.Broker,
) -> None:
    room = broker.subscribe("chat:room:*", pattern=True)
    broker.publish_many("chat:room:1", ["a", "b"])
    first, second = room.receive(timeout=0), room.receive(timeout=0)
    assert first is not None and second is not None
    room.close()
    first.ack()  # not stale: closing the subscription did not take its leases
    second.nack()
    assert broker.inspect("chat:room:1").groups == (), "the closed pattern's group is gone"


def test_maxlen_keeps_the_newest(clock: ManualClock) -> None:
    with brokerkit.connect("memory://?maxlen=3", clock=clock) as broker:
        broker.publish_many("t", range(10))
        assert broker.inspect("t").length == 3
        assert [d.body for d in broker.consume("t", timeout=0)] == [7, 8, 9]


def test_named_brokers_share_a_store_and_unnamed_ones_do_not() -> None:
    with brokerkit.connect("memory://shop") as a, brokerkit.connect("memory://shop") as b:
        a.publish("t", "shared")
        assert next(b.consume("t", timeout=0)).body == "shared"
    with brokerkit.connect("memory://") as c, brokerkit.connect("memory://") as d:
        c.publish("t", "private")
        assert list(d.consume("t", timeout=0)) == []


def test_settling_errors(broker: brokerkit.Broker) -> None:
    broker.publish("t", "x")
    delivery = broker.subscribe("t").receive(timeout=0)
    assert delivery is not None
    with (
        brokerkit.connect("memory://") as other,
        pytest.raises(DeliveryError, match="another broker"),
    ):
        other.ack(delivery)
    delivery.ack()
    with pytest.raises(AlreadySettled):
        delivery.ack()
    with pytest.raises(AlreadySettled):
        delivery.nack()


def test_closed_broker_refuses_work_and_hands_back_prefetched(clock: ManualClock) -> None:
    with brokerkit.connect("memory://hand-back", clock=clock) as keeper:
        broker = brokerkit.connect("memory://hand-back", clock=clock)
        broker.publish_many("t", [1, 2, 3])
        sub = broker.subscribe("t", prefetch=3)
        assert sub.receive(timeout=0) is not None  # 2 and 3 are buffered
        broker.close()
        assert sub.closed
        with pytest.raises(BrokerClosed):
            broker.publish("t", 4)
        with pytest.raises(BrokerClosed):
            sub.receive(timeout=0)
        assert [d.body for d in keeper.consume("t", timeout=0)] == [2, 3]


def test_a_subscribe_that_close_overtakes_ends_closed_and_leases_nothing() -> None:
    """close() waits for a subscribe still under way (its server round trip, here
    held on an event), closes its subscription with the others, and the subscribe
    raises BrokerClosed."""
    entered, go_on = threading.Event(), threading.Event()

    class Slow(MemoryBroker):
        def _subscribe(self, subscription: Subscription) -> None:
            entered.set()
            assert go_on.wait(10)
            super()._subscribe(subscription)

    with brokerkit.connect("memory://overtaken") as keeper:
        broker = Slow.from_url("memory://overtaken")
        keeper.publish_many("t", [1, 2])
        raised: list[BaseException] = []

        def subscribe() -> None:
            try:
                broker.subscribe("t", prefetch=2)
            except BaseException as exc:
                raised.append(exc)

        thread = threading.Thread(target=subscribe)
        thread.start()
        assert entered.wait(10)
        closing = threading.Thread(target=broker.close)
        closing.start()
        deadline = time.monotonic() + 10
        while not broker._closed:  # close() has begun: it waits for the subscribe
            assert time.monotonic() < deadline, "close() never began"
            go_on.wait(0.001)  # polling with a deadline
        go_on.set()
        thread.join(10)
        closing.join(10)
        assert not closing.is_alive()
        assert [type(exc) for exc in raised] == [BrokerClosed]
        info = keeper.inspect("t")
        assert (info.length, info.in_flight) == (2, 0)


def test_invalid_topics_are_refused_and_nothing_is_published(broker: brokerkit.Broker) -> None:
    for bad in ["", "has space", "a*b", "{tag}", "x" * 201]:
        with pytest.raises(InvalidTopic):
            broker.publish(bad, "x")
    with pytest.raises(InvalidTopic, match="pattern=True"):
        broker.subscribe("chat:*")


@pytest.mark.parametrize("one_body", ["abc", b"abc", {"a": 1}])
def test_publish_many_refuses_a_single_body(broker: brokerkit.Broker, one_body: object) -> None:
    with pytest.raises(brokerkit.InvalidMessage, match="iterable of bodies"):
        broker.publish_many("t", one_body)  # type: ignore[arg-type]
    assert broker.inspect("t").length == 0


def test_purge_drops_waiting_messages_only(broker: brokerkit.Broker) -> None:
    broker.publish_many("t", [1, 2, 3])
    held = broker.subscribe("t").receive(timeout=0)
    assert broker.purge("t") == 3  # the log held all three; the in-flight one stays leased
    assert broker.subscribe("t").receive(timeout=0) is None
    held.ack()  # type: ignore[union-attr]


def test_threads_lose_nothing_and_duplicate_nothing() -> None:
    producers, per_producer, consumers = 4, 500, 4
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    done_publishing = threading.Event()
    with brokerkit.connect("memory://") as broker:

        def produce(n: int) -> None:
            for i in range(per_producer):
                broker.publish("work", f"{n}-{i}")

        def consume() -> None:
            sub = broker.subscribe("work", prefetch=7)
            while True:
                delivery = sub.receive(timeout=0.05)
                if delivery is None:
                    if done_publishing.is_set():
                        return
                    continue
                with lock:
                    seen[delivery.body] += 1
                delivery.ack()

        threads = [threading.Thread(target=consume) for _ in range(consumers)]
        for t in threads:
            t.start()
        publishers = [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
        for t in publishers:
            t.start()
        for t in publishers:
            t.join()
        done_publishing.set()
        for t in threads:
            t.join(30)
        assert len(seen) == producers * per_producer
        assert set(seen.values()) == {1}
        assert broker.inspect("work").in_flight == 0
