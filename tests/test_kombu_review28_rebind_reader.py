"""kombu+amqp: a live subscription's queue is bound again from the reading side.

Deleting a topic's exchange deletes its bindings. Review 28 had the publish that finds
it gone bind again the groups of its own broker; but when another broker redeclares
the exchange first, this broker's publishes find it there, and its live group stayed
unbound, missing every message without being told; and a process that only consumes
never publishes at all. The reaper now binds again the queue of each live
subscription of its broker, every few seconds (``queue.bind`` is idempotent), and at
its next sweep after the subscription's channel was opened anew; and a publish whose
message RabbitMQ returns (the exchange was declared anew by someone, bound to nothing)
binds its broker's groups again before it sends the message again.

A group may still miss what is published between the redeclare and its broker's next
round (documented): these tests publish probes until one arrives (with a deadline),
then check that nothing after it is missed. Real RabbitMQ; under the test's own
prefix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.kombu_rabbitmq import delete_names, kombu_broker, rabbitmq, raw_connection
from tests.test_kombu_review27_channel_closed import close_its_channel
from tests.test_kombu_review28_consumer_timeout import _read_by_the_reaper

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]

#: The longest a group may take to be bound again here (a round every 2 s).
DEADLINE = 30.0


def _bound_again(publisher: Any, subscription: Any) -> None:
    """Publish probes from ``publisher`` until ``subscription`` gets one (it is bound
    again), failing after :data:`DEADLINE`; ack what came."""
    deadline = time.monotonic() + DEADLINE
    for n in range(1_000_000):
        assert time.monotonic() < deadline, "the live group was never bound again"
        publisher.publish("jobs", f"probe-{n}")
        delivery = subscription.receive(timeout=0.25)
        if delivery is not None:
            delivery.ack()
            break
    while (late := subscription.receive(timeout=0.25)) is not None:
        assert late.body.startswith("probe-"), late.body
        late.ack()


def _received(subscription: Any, count: int) -> list[str]:
    got = []
    for _ in range(count):
        delivery = subscription.receive(timeout=5)
        assert delivery is not None, f"the group missed what followed {got}"
        got.append(delivery.body)
        delivery.ack()
    return got


def _first(broker: Any, subscription: Any) -> None:
    broker.publish("jobs", "before")
    assert _received(subscription, 1) == ["before"]


@pytest.mark.parametrize("prober", ["other", "mine"])
def test_a_group_unbound_by_another_brokers_redeclare_is_bound_again(
    kombu_broker: Factory, prober: str
) -> None:
    """``mine`` reads group 'workers'; ``other`` (same prefix) redeclares the
    exchange first, so no publish of ``mine`` finds it gone (and ``mine`` may not
    publish at all: prober 'other')."""
    mine, other = kombu_broker(), kombu_broker()
    prefix = mine.options.prefix
    with mine.subscribe("jobs", group="workers") as workers:
        mine.publish("jobs", "declared")  # (mine's link declared the topic)
        assert _received(workers, 1) == ["declared"]
        _first(other, workers)
        delete_names({f"{prefix}|jobs"}, set())  # an operator's delete_exchange
        other.publish("jobs", "redeclared")  # other finds it gone, declares it anew
        _bound_again(mine if prober == "mine" else other, workers)
        mine.publish("jobs", "mine-after")
        other.publish("jobs", "other-after")
        assert _received(workers, 2) == ["mine-after", "other-after"]


def test_a_consume_only_process_is_bound_again(kombu_broker: Factory) -> None:
    """The common layout: a worker process that never publishes."""
    worker, producer = kombu_broker(), kombu_broker()
    prefix = worker.options.prefix
    with worker.subscribe("jobs", group="workers") as workers:
        _first(producer, workers)
        delete_names({f"{prefix}|jobs"}, set())
        producer.publish("jobs", "redeclared")
        _bound_again(producer, workers)
        producer.publish("jobs", "after")
        producer.publish("jobs", "later")
        assert _received(workers, 2) == ["after", "later"]
    assert producer.inspect("jobs").in_flight == 0


def test_a_subscription_whose_channel_was_opened_anew_is_bound_again_at_once(
    kombu_broker: Factory,
) -> None:
    """With the periodic round pushed an hour away, a channel opened anew (RabbitMQ
    closed the old one) still brings a round at the next sweep."""
    mine, other = kombu_broker(), kombu_broker()
    prefix = mine.options.prefix
    with mine.subscribe("jobs", group="workers") as workers:
        _first(other, workers)
        mine._rebinder.interval = 3600.0
        rounds = mine._rebinder.rounds
        deadline = time.monotonic() + DEADLINE
        while mine._rebinder.rounds < rounds + 1:  # (the next round is an hour away)
            assert time.monotonic() < deadline, "the reaper made no round"
            time.sleep(0.02)
        delete_names({f"{prefix}|jobs"}, set())
        other.publish("jobs", "redeclared")
        assert workers.receive(timeout=0.2) is None  # (unbound; it waits as a consumer)
        close_its_channel(mine, workers)
        # (the reaper reads the close: a receive reading it itself raises it)
        _read_by_the_reaper(workers)
        _bound_again(other, workers)


def test_a_returned_message_binds_the_groups_again_before_it_is_sent_again(
    kombu_broker: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone deleted the topic's exchange and default queue and declared the
    exchange anew, bound to nothing: the publish's message is returned (routed to no
    queue). It declares the default queue and binds its broker's groups again before
    it sends the message again: the live group gets it (the periodic round is off
    here, so that only the publish can have bound it)."""
    broker = kombu_broker()
    prefix = broker.options.prefix
    monkeypatch.setattr(broker, "_rebinder", _NoRounds(), raising=False)
    with broker.subscribe("jobs", group="workers") as workers:
        _first(broker, workers)
        delete_names({f"{prefix}|jobs"}, {f"{prefix}|jobs|default"})
        with raw_connection() as connection:
            channel = connection.channel()
            channel.exchange_declare(f"{prefix}|jobs", "fanout", durable=True, auto_delete=False)
            channel.close()
        broker.publish("jobs", "returned")
        assert _received(workers, 1) == ["returned"]
    with broker.subscribe("jobs") as default:  # (its default queue, declared anew)
        assert _received(default, 1) == ["returned"]


class _NoRounds:
    """A rebinder that never binds (see the returned-message test)."""

    rounds = 0

    def sweep(self, *args: Any) -> None:
        pass
