"""Delays held by the broker: the public API's checks, the memory backend's rules on a
ManualClock, and what a backend without Capability.DELAY does (the contract suite
checks the shared promises over every backend that declares DELAY)."""

from __future__ import annotations

import asyncio
import datetime
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import Capability, InvalidOption, ManualClock, Unsupported
from brokerkit.backends.memory import AsyncMemoryBroker, MemoryBroker

UTC = datetime.timezone.utc


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000.0)


@pytest.fixture
def broker(clock: ManualClock) -> Iterator[brokerkit.Broker]:
    with brokerkit.connect("memory://", clock=clock, max_deliveries=3) as broker:
        yield broker


def _bodies(subscription: brokerkit.Subscription) -> list[object]:
    got = []
    while (delivery := subscription.receive(timeout=0)) is not None:
        got.append(delivery.body)
        delivery.ack()
    return got


# -- the arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"delay": -1}, "0 or more"),
        ({"delay": math.nan}, "finite"),
        ({"delay": math.inf}, "finite"),
        ({"delay": 10**400}, "finite"),
        ({"at": 10**400}, "finite"),
        ({"delay": True}, "number of seconds"),
        ({"delay": "5"}, "number of seconds"),
        ({"at": datetime.datetime(2030, 1, 1)}, "timezone-aware"),
        ({"at": "tomorrow"}, "aware datetime or epoch seconds"),
        ({"at": math.nan}, "finite"),
        ({"at": -math.inf}, "finite"),
        ({"delay": 1, "at": 10.0}, "not both"),
    ],
)
def test_bad_publish_delays_are_refused_and_nothing_is_sent(
    broker: brokerkit.Broker, kwargs: dict[str, object], says: str
) -> None:
    with pytest.raises(InvalidOption, match=says):
        broker.publish("t", "x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidOption, match=says):
        broker.publish_many("t", ["x", "y"], **kwargs)  # type: ignore[arg-type]
    info = broker.inspect("t")
    assert (info.length, info.scheduled) == (0, 0)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"delay": -0.5}, "0 or more"),
        ({"delay": math.nan}, "finite"),
        ({"delay": 1, "requeue": False}, "requeue=True"),
        ({"reason": ""}, "1 to 1000 characters, got an empty one; leave it out"),
        ({"reason": "x" * 1001}, "1 to 1000 characters, got one of 1001"),
        ({"reason": 42}, "must be a str"),
        ({"reason": "\ud800"}, "UTF-8"),
        # read by its truth, "no" would requeue and None dead-letter
        ({"requeue": "no"}, "requeue must be True .* or False .*, got str"),
        ({"requeue": None}, "requeue must be True .* or False .*, got NoneType"),
        ({"requeue": 1}, "requeue must be True .* or False .*, got int"),
    ],
)
def test_bad_nack_arguments_are_refused_and_nothing_is_settled(
    broker: brokerkit.Broker, kwargs: dict[str, object], says: str
) -> None:
    broker.publish("t", "x")
    delivery = broker.subscribe("t").receive(timeout=0)
    assert delivery is not None
    with pytest.raises(InvalidOption, match=says):
        delivery.nack(**kwargs)  # type: ignore[arg-type]
    assert not delivery.settled
    delivery.ack()


def test_a_reason_of_the_longest_length_is_recorded(broker: brokerkit.Broker) -> None:
    broker.publish("t", "x")
    delivery = broker.subscribe("t").receive(timeout=0)
    reason = "é" * brokerkit.MAX_REASON_LENGTH
    delivery.nack(requeue=False, reason=reason)  # type: ignore[union-attr]
    dead = broker.subscribe("t.dlq").receive(timeout=0)
    assert dead is not None and dead.headers["x-dead-letter-reason"] == reason


def test_no_delay_a_zero_delay_and_a_past_at_publish_now(broker: brokerkit.Broker) -> None:
    past = datetime.datetime.now(UTC) - datetime.timedelta(hours=1)
    broker.publish("t", 1, delay=None)
    broker.publish("t", 2, delay=0)
    broker.publish("t", 3, at=past)
    broker.publish("t", 4, at=past.timestamp())
    broker.publish("t", 5, at=datetime.datetime(1969, 12, 31, 23, 59, tzinfo=UTC))
    broker.publish("t", 6, at=-60.0)  # the same moment in epoch seconds (was refused)
    assert broker.inspect("t").scheduled == 0
    assert _bodies(broker.subscribe("t")) == [1, 2, 3, 4, 5, 6]


# -- the memory backend, on a ManualClock ------------------------------------------


def test_a_delayed_publish_waits_in_the_broker_until_due(
    broker: brokerkit.Broker, clock: ManualClock
) -> None:
    broker.publish_many("t", ["a", "b"], delay=5)
    broker.publish("t", "now")
    subscription = broker.subscribe("t")
    info = broker.inspect("t")
    assert (info.length, info.scheduled) == (1, 2)
    assert _bodies(subscription) == ["now"]
    clock.advance(4.999)
    assert _bodies(subscription) == []
    clock.advance(0.001)
    assert _bodies(subscription) == ["a", "b"]
    assert broker.inspect("t").scheduled == 0


def test_at_is_a_wall_clock_time(broker: brokerkit.Broker, clock: ManualClock) -> None:
    soon = datetime.datetime.now(UTC) + datetime.timedelta(seconds=60)
    broker.publish("t", "x", at=soon)
    subscription = broker.subscribe("t")
    clock.advance(55)
    assert _bodies(subscription) == []
    clock.advance(10)
    assert _bodies(subscription) == ["x"]


def test_every_group_gets_a_delayed_publish_once(
    broker: brokerkit.Broker, clock: ManualClock
) -> None:
    early = broker.subscribe("t", group="early")
    broker.publish("t", "x", delay=1)
    late = broker.subscribe("t", group="late", start="latest")  # joined before it was due
    clock.advance(1)
    assert (_bodies(early), _bodies(late)) == (["x"], ["x"])
    assert (_bodies(early), _bodies(late)) == ([], [])


def test_a_delayed_nack_is_held_for_its_group_only(
    broker: brokerkit.Broker, clock: ManualClock
) -> None:
    first, second = broker.subscribe("t", group="g1"), broker.subscribe("t", group="g2")
    broker.publish("t", "x")
    delivery = first.receive(timeout=0)
    delivery.nack(delay=3)  # type: ignore[union-attr]
    assert broker.inspect("t").scheduled == 1
    assert _bodies(second) == ["x"]
    assert first.receive(timeout=0) is None
    clock.advance(3)
    again = first.receive(timeout=0)
    assert again is not None and (again.body, again.attempt) == ("x", 2)
    again.ack()


def test_a_delayed_nack_dead_letters_at_max_deliveries_with_the_reason(
    broker: brokerkit.Broker, clock: ManualClock
) -> None:
    broker.publish("t", "x")
    subscription = broker.subscribe("t")
    for attempt in (1, 2, 3):
        clock.advance(2)
        delivery = subscription.receive(timeout=0)
        assert delivery is not None and delivery.attempt == attempt
        delivery.nack(delay=2, reason=f"failed {attempt}")
    clock.advance(2)
    assert subscription.receive(timeout=0) is None
    assert broker.inspect("t").scheduled == 0
    dead = broker.subscribe("t.dlq").receive(timeout=0)
    assert dead is not None
    assert dead.headers["x-dead-letter-reason"] == "failed 3"
    assert dead.headers["x-deliveries"] == "3"


def test_a_receive_waiting_for_a_due_time_wakes_when_the_clock_moves(
    broker: brokerkit.Broker, clock: ManualClock
) -> None:
    broker.publish("t", "x", delay=30)
    subscription = broker.subscribe("t")
    timer = threading.Timer(0.05, clock.advance, (30,))
    timer.start()
    try:
        delivery = subscription.receive(timeout=10)
    finally:
        timer.cancel()
    assert delivery is not None and delivery.body == "x"


def test_purge_drops_what_is_held(broker: brokerkit.Broker, clock: ManualClock) -> None:
    broker.publish("t", "held", delay=10)
    broker.publish("t", "retried")
    subscription = broker.subscribe("t")
    subscription.receive(timeout=0).nack(delay=10)  # type: ignore[union-attr]
    assert broker.inspect("t").scheduled == 2
    assert broker.purge("t") == 2
    clock.advance(20)
    assert _bodies(subscription) == []
    assert broker.inspect("t").scheduled == 0


def test_the_async_api_holds_delays_too(clock: ManualClock) -> None:
    async def main() -> list[tuple[object, int]]:
        async with brokerkit.aio.connect("memory://", clock=clock) as broker:
            await broker.publish("t", "x", delay=2)
            subscription = await broker.subscribe("t")
            assert await subscription.receive(timeout=0) is None
            clock.advance(2)
            delivery = await subscription.receive(timeout=0)
            assert delivery is not None
            await delivery.nack(delay=1, reason="later")
            assert (await broker.inspect("t")).scheduled == 1
            clock.advance(1)
            again = await subscription.receive(timeout=0)
            assert again is not None
            await again.ack()
            return [(delivery.body, delivery.attempt), (again.body, again.attempt)]

    assert asyncio.run(main()) == [("x", 1), ("x", 2)]


# -- a backend without DELAY (the example plugin: sync primitives, written before delays)


def test_a_backend_without_delay_refuses_one_and_sends_nothing(tmp_path: Path) -> None:
    with brokerkit.connect(f"sqlite:///{tmp_path}/q.db") as broker:
        assert Capability.DELAY not in broker.capabilities
        for kwargs in ({"delay": 1}, {"at": 1e10}, {"at": 1.0}):
            with pytest.raises(Unsupported, match="DELAY"):
                broker.publish("t", "x", **kwargs)
        broker.publish("t", "now", delay=0)
        delivery = broker.subscribe("t").receive(timeout=1)
        assert delivery is not None and delivery.body == "now"
        assert broker.inspect("t").length == 0  # nothing else was stored
        with pytest.raises(Unsupported, match="DELAY"):
            delivery.nack(delay=1)
        assert not delivery.settled
        delivery.nack(reason="kept working: requeued without a delay")
        again = broker.subscribe("t").receive(timeout=1)
        assert again is not None and again.attempt == 2
        again.nack(requeue=False, reason="recorded without a delay")
        dead = broker.subscribe("t.dlq").receive(timeout=1)
        assert dead is not None
        assert dead.headers["x-dead-letter-reason"] == "recorded without a delay"
        dead.ack()


def test_a_backend_without_delay_refuses_one_under_asyncio_too(tmp_path: Path) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(f"sqlite:///{tmp_path}/q.db") as broker:
            with pytest.raises(Unsupported, match="DELAY"):
                await broker.publish("t", "x", delay=1)
            await broker.publish("t", "x")
            subscription = await broker.subscribe("t")
            delivery = await subscription.receive(timeout=1)
            assert delivery is not None
            with pytest.raises(Unsupported, match="DELAY"):
                await delivery.nack(delay=1)
            await delivery.nack(requeue=False, reason="through the thread adapter")

    asyncio.run(main())


# -- the adapters pass delays and reasons through -----------------------------------


def test_the_thread_adapter_passes_delays_and_reasons_through(clock: ManualClock) -> None:
    async def main() -> tuple[int, str]:
        url = brokerkit.BrokerURL.parse("memory://")
        broker = await brokerkit.aio.threaded(MemoryBroker).open(url, clock=clock)
        async with broker:
            await broker.publish("t", "x", delay=5)
            subscription = await broker.subscribe("t")
            assert await subscription.receive(timeout=0) is None
            clock.advance(5)
            delivery = await subscription.receive(timeout=0)
            assert delivery is not None
            await delivery.nack(delay=1)
            clock.advance(1)
            again = await subscription.receive(timeout=0)
            assert again is not None
            await again.nack(requeue=False, reason="through threads")
            dead = await (await broker.subscribe("t.dlq")).receive(timeout=0)
            assert dead is not None
            await dead.ack()
            return again.attempt, dead.headers["x-dead-letter-reason"]

    assert asyncio.run(main()) == (2, "through threads")


def test_the_loop_bridge_passes_delays_and_reasons_through(clock: ManualClock) -> None:
    bridge = brokerkit.aio.bridged(AsyncMemoryBroker)
    with bridge.from_url("memory://", clock=clock) as broker:
        broker.publish("t", "x", delay=5)
        subscription = broker.subscribe("t")
        assert subscription.receive(timeout=0) is None
        clock.advance(5)
        delivery = subscription.receive(timeout=0)
        assert delivery is not None
        delivery.nack(delay=1)
        clock.advance(1)
        again = subscription.receive(timeout=0)
        assert again is not None and again.attempt == 2
        again.nack(requeue=False, reason="through the bridge")
        dead = broker.subscribe("t.dlq").receive(timeout=0)
        assert dead is not None and dead.headers["x-dead-letter-reason"] == "through the bridge"
        dead.ack()


def test_on_the_system_clock_a_waiting_receive_wakes_when_due_not_before() -> None:
    with brokerkit.connect("memory://") as broker:
        subscription = broker.subscribe("t")
        before = time.monotonic()
        broker.publish("t", "x", delay=0.2)
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and time.monotonic() - before >= 0.2
        before = time.monotonic()
        delivery.nack(delay=0.2)
        again = subscription.receive(timeout=5)
        assert again is not None and time.monotonic() - before >= 0.2
        assert again.attempt == 2
        again.ack()
