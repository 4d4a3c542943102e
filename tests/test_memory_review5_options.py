"""memory://NAME shared by connections with different options: a lease runs out under
the max_deliveries (and maxlen) of the connection that took it, a delayed publish is
capped by the maxlen of the connection that published it, whichever connection
happens to look first."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import ManualClock


def _name() -> str:
    return f"memory://review5-{uuid.uuid4().hex}"


@pytest.mark.parametrize("observer_looks_first", [False, True])
def test_a_lease_runs_out_under_the_max_deliveries_of_the_connection_that_took_it(
    observer_looks_first: bool,
) -> None:
    clock, url = ManualClock(), _name()
    with (
        brokerkit.connect(url, clock=clock, visibility_timeout=10) as taker,
        brokerkit.connect(url, clock=clock, max_deliveries=1) as observer,
    ):
        taker.publish("t", "job")
        with taker.subscribe("t", group="g") as subscription:
            first = subscription.receive(timeout=0)
            assert first is not None and first.attempt == 1
            clock.advance(11)  # the lease runs out
            if observer_looks_first:
                observer.inspect("unrelated")  # only looks at another topic
            again = subscription.receive(timeout=0)
            assert again is not None, "the taker has no max_deliveries: it comes back"
            assert (again.body, again.attempt) == ("job", 2)
            assert taker.inspect("t").dead_lettered == 0
            again.ack()


@pytest.mark.parametrize("observer_looks_first", [False, True])
def test_a_lease_taken_under_max_deliveries_is_dead_lettered_whoever_looks(
    observer_looks_first: bool,
) -> None:
    clock, url = ManualClock(), _name()
    with (
        brokerkit.connect(url, clock=clock, visibility_timeout=10, max_deliveries=1) as taker,
        brokerkit.connect(url, clock=clock) as observer,
    ):
        taker.publish("t", "job")
        with taker.subscribe("t", group="g") as subscription:
            assert subscription.receive(timeout=0) is not None
            clock.advance(11)
            looker = observer if observer_looks_first else taker
            assert looker.inspect("t").dead_lettered == 1
            assert subscription.receive(timeout=0) is None
            with observer.subscribe("t", group="g") as other:
                assert other.receive(timeout=0) is None, "redelivered past the taker's limit"
        dead = observer.subscribe("t.dlq").receive(timeout=0)
        assert dead is not None
        assert (dead.body, dead.headers["x-deliveries"]) == ("job", "1")


def test_a_dead_letter_of_a_lease_is_capped_by_the_maxlen_of_the_connection_that_took_it() -> None:
    clock, url = ManualClock(), _name()
    with (
        brokerkit.connect(url, clock=clock, visibility_timeout=10, max_deliveries=1) as taker,
        brokerkit.connect(url, clock=clock, maxlen=1) as observer,
    ):
        taker.publish_many("t", ["a", "b"])
        with taker.subscribe("t", group="g", prefetch=2) as subscription:
            assert subscription.receive(timeout=0) is not None
            assert subscription.receive(timeout=0) is not None
            clock.advance(11)  # both run out: two dead letters
            observer.inspect("unrelated")
        # The taker has no maxlen: its dead letters are not trimmed by the observer's.
        assert observer.inspect("t.dlq").length == 2
        assert [d.body for d in taker.consume("t.dlq", timeout=0)] == ["a", "b"]


@pytest.mark.parametrize("observer_looks_first", [False, True])
def test_a_delayed_publish_comes_due_under_the_maxlen_of_its_publisher(
    observer_looks_first: bool,
) -> None:
    clock, url = ManualClock(), _name()
    with (
        brokerkit.connect(url, clock=clock) as publisher,
        brokerkit.connect(url, clock=clock, maxlen=1) as observer,
    ):
        publisher.publish_many("t", ["a", "b", "c"], delay=5)
        clock.advance(5)
        looker = observer if observer_looks_first else publisher
        assert looker.inspect("t").length == 3, "trimmed by a maxlen its publisher did not set"
        assert [d.body for d in publisher.consume("t", timeout=0)] == ["a", "b", "c"]


@pytest.mark.parametrize("observer_looks_first", [False, True])
def test_a_capped_publisher_caps_its_delayed_publishes_whoever_releases_them(
    observer_looks_first: bool,
) -> None:
    clock, url = ManualClock(), _name()
    with (
        brokerkit.connect(url, clock=clock, maxlen=2) as publisher,
        brokerkit.connect(url, clock=clock) as observer,
    ):
        publisher.publish_many("t", ["a", "b", "c"], delay=5)
        clock.advance(5)
        looker = observer if observer_looks_first else publisher
        assert looker.inspect("t").length == 2
        assert [d.body for d in observer.consume("t", timeout=0)] == ["b", "c"]


def test_an_asyncio_connection_looking_first_applies_the_sync_takers_limit() -> None:
    """The sync and asyncio connections of one name share the store: the same rule."""
    clock, url = ManualClock(), _name()

    async def observe() -> int:
        async with brokerkit.aio.connect(url, clock=clock, max_deliveries=1) as observer:
            return (await observer.inspect("t")).dead_lettered

    with brokerkit.connect(url, clock=clock, visibility_timeout=10) as taker:
        taker.publish("t", "job")
        with taker.subscribe("t", group="g") as subscription:
            assert subscription.receive(timeout=0) is not None
            clock.advance(11)
            assert asyncio.run(observe()) == 0
            again = subscription.receive(timeout=0)
            assert again is not None and again.attempt == 2
            again.ack()
