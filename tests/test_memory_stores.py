"""memory:// pattern subscriptions' groups and starts, and the life of named stores."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Iterator

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import InvalidOption, ManualClock, Subscription


@pytest.fixture
def broker() -> Iterator[brokerkit.Broker]:
    with brokerkit.connect("memory://") as made:
        yield made


def _bodies(subscription: Subscription) -> list[object]:
    """Everything ``subscription`` has now, each acked."""
    bodies = []
    while (delivery := subscription.receive(timeout=0)) is not None:
        bodies.append(delivery.body)
        delivery.ack()
    return bodies


# -- pattern subscriptions: a private group each ---------------------------------------


def test_pattern_subscriptions_of_one_consumer_name_each_get_every_message(
    broker: brokerkit.Broker,
) -> None:
    broker.publish("t.x", "before")  # the topic exists when they subscribe
    first = broker.subscribe("t.*", pattern=True, consumer="worker-1")
    second = broker.subscribe("t.*", pattern=True, consumer="worker-1")
    broker.publish_many("t.x", ["m1", "m2"])
    assert _bodies(first) == ["m1", "m2"]
    assert _bodies(second) == ["m1", "m2"], "they competed in one group"
    first.close()
    broker.publish("t.x", "m3")
    assert _bodies(second) == ["m3"], "the survivor got acked messages again"


# -- pattern subscriptions: start ------------------------------------------------------


def test_a_pattern_subscription_starts_at_earliest_when_told(broker: brokerkit.Broker) -> None:
    broker.publish("orders.eu", "old-eu")
    broker.publish("orders.us", "old-us")
    broker.publish("other", "not matched")
    for group in (None, "audit"):
        subscription = broker.subscribe("orders.*", pattern=True, group=group, start="earliest")
        broker.publish("orders.asia", "new-asia")  # a topic made after it subscribed
        assert sorted(map(str, _bodies(subscription))) == ["new-asia", "old-eu", "old-us"]
        broker.purge("orders.asia")


def test_a_pattern_subscription_starts_at_latest_by_default_and_when_told(
    broker: brokerkit.Broker,
) -> None:
    broker.publish("orders.eu", "old-eu")
    for start in (None, "latest"):
        subscription = broker.subscribe("orders.*", pattern=True, group=f"g-{start}", start=start)
        broker.publish("orders.eu", f"new-eu-{start}")
        broker.publish(f"orders.{start}", f"new-topic-{start}")
        assert sorted(map(str, _bodies(subscription))) == [
            f"new-eu-{start}",
            f"new-topic-{start}",
        ]


@pytest.mark.parametrize("start", ["bogus", "0", "3", ""])
def test_a_pattern_subscription_refuses_any_other_start(
    broker: brokerkit.Broker, start: str
) -> None:
    broker.publish("orders.eu", "old-eu")
    with pytest.raises(InvalidOption, match="with pattern=True, start must be"):
        broker.subscribe("orders.*", pattern=True, group="g", start=start)
    with pytest.raises(InvalidOption, match="with pattern=True, start must be"):
        broker.subscribe("orders.*", pattern=True, start=start)
    assert broker.inspect("orders.eu").groups == (), "a refused subscription left a group"


def _name() -> str:
    return f"stores-{uuid.uuid4().hex[:12]}"


# -- named stores: one per name, while a connection to it is open ----------------------


def test_names_that_differ_by_a_slash_are_different_stores() -> None:
    name = _name()
    with (
        brokerkit.connect(f"memory://{name}/b") as slashed,
        brokerkit.connect(f"memory://{name}b") as joined,
        brokerkit.connect(f"memory://{name}/b/") as same,
    ):
        slashed.publish("t", "from a/b")
        assert [d.body for d in joined.consume("t", timeout=0)] == []
        assert [d.body for d in same.consume("t", timeout=0)] == ["from a/b"]


def test_a_name_is_case_blind_before_its_first_slash_and_a_leading_slash_is_dropped() -> None:
    name = _name()
    with (
        brokerkit.connect(f"memory://{name.upper()}/Path") as upper,
        brokerkit.connect(f"memory://{name}/Path") as lower,
        brokerkit.connect(f"memory:///{name}/Path") as rooted,
        brokerkit.connect(f"memory://{name}/path") as other_path,
    ):
        upper.publish("t", "one")
        assert [d.body for d in other_path.consume("t", timeout=0)] == []
        assert [d.body for d in lower.consume("t", timeout=0)] == ["one"]
        rooted.publish("t", "two")
        assert [d.body for d in lower.consume("t", timeout=0)] == ["two"]


def test_a_named_store_is_shared_while_a_connection_is_open() -> None:
    url = f"memory://{_name()}"
    with brokerkit.connect(url) as keeper:
        first = brokerkit.connect(url)
        first.publish("orders", "kept")
        first.close()
        with brokerkit.connect(url) as second:
            assert [d.body for d in second.consume("orders", timeout=0)] == ["kept"]
        assert keeper.inspect("orders").length == 1


def test_a_named_store_is_gone_when_its_last_connection_closes() -> None:
    url = f"memory://{_name()}"
    first = brokerkit.connect(url)
    first.publish("orders", "left behind")
    first.close()  # the last open connection; the closed object is still referenced
    with brokerkit.connect(url) as later:
        assert later.topics() == []
        assert [d.body for d in later.consume("orders", timeout=0)] == []
    assert first.closed


def test_a_named_store_nobody_closed_is_gone_once_its_broker_is_garbage() -> None:
    url = f"memory://{_name()}"
    forgotten = brokerkit.connect(url)
    forgotten.publish("orders", "left behind")
    del forgotten
    gc.collect()
    with brokerkit.connect(url) as later:
        assert later.topics() == []


def test_an_async_connection_shares_and_releases_the_named_store() -> None:
    url = f"memory://{_name()}"

    async def publish_then_close() -> list[object]:
        async with brokerkit.aio.connect(url) as aio_broker:
            await aio_broker.publish("orders", "from asyncio")
            with brokerkit.connect(url) as sync_broker:
                return [d.body for d in sync_broker.consume("orders", timeout=0)]

    assert asyncio.run(publish_then_close()) == ["from asyncio"]
    with brokerkit.connect(url) as later:
        assert later.topics() == []


def test_a_second_clock_for_an_open_store_is_refused() -> None:
    url = f"memory://{_name()}"
    clock, other = ManualClock(), ManualClock()
    with brokerkit.connect(url, clock=clock):
        with pytest.raises(InvalidOption, match="open already with another clock"):
            brokerkit.connect(url, clock=other)
        brokerkit.connect(url, clock=clock).close()  # the same clock: fine
        brokerkit.connect(url).close()  # no clock: the store's
    with brokerkit.connect(url, clock=other) as broker:  # closed: a new store, this clock
        broker.publish("jobs", "resize photo 7")
        with broker.subscribe("jobs", group="workers") as subscription:
            first = subscription.receive(timeout=0)
            assert first is not None
            other.advance(31)
            again = subscription.receive(timeout=0)
            assert again is not None and again.attempt == 2, "the later clock was ignored"
            again.ack()


def test_a_second_clock_refusal_does_not_quote_a_secret_in_the_name() -> None:
    url = f"memory://{_name()}/token=S3cretTail"
    with brokerkit.connect(url, clock=ManualClock()), pytest.raises(InvalidOption) as refused:
        brokerkit.connect(url, clock=ManualClock())
    assert "S3cretTail" not in str(refused.value)
    assert "/token=***" in str(refused.value)


def test_a_manual_clock_for_a_store_open_on_real_time_is_refused() -> None:
    url = f"memory://{_name()}"
    with (
        brokerkit.connect(url),
        pytest.raises(InvalidOption, match="open already with another clock"),
    ):
        brokerkit.connect(url, clock=ManualClock())
