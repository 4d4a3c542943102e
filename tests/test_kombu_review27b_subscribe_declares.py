"""kombu+amqp: subscribing again declares anew the group's queue, bound to its topic's
exchange (someone may have deleted either since), and nothing else: the topic's
default queue and its dead-letter topic stay declared once per connection. Counted on
the real connection: every AMQP method py-amqp sends goes through
``AbstractChannel.send_method``, wrapped here to count them (and pass them on)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import amqp.abstract_channel
import pytest
from amqp import spec

from tests.kombu_rabbitmq import delete_names, kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]

DECLARATIONS = {
    spec.Exchange.Declare: "exchange.declare",
    spec.Queue.Declare: "queue.declare",
    spec.Queue.Bind: "queue.bind",
}


def _counting(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    original = amqp.abstract_channel.AbstractChannel.send_method

    def send_method(self: Any, sig: Any, *args: Any, **kwargs: Any) -> Any:
        if sig in DECLARATIONS:
            counts[DECLARATIONS[sig]] += 1
        return original(self, sig, *args, **kwargs)

    monkeypatch.setattr(amqp.abstract_channel.AbstractChannel, "send_method", send_method)
    return counts


@pytest.mark.parametrize("group", ["workers", "default"])
def test_subscribing_again_declares_only_the_group_queue_and_its_exchange(
    kombu_broker: Factory, monkeypatch: pytest.MonkeyPatch, group: str
) -> None:
    broker = kombu_broker()
    broker.subscribe("jobs", group=group).close()  # declares the topic, and the group
    counts = _counting(monkeypatch)
    broker.subscribe("jobs", group=group).close()
    # It sent 9: the default queue's and the dead-letter topic's (with its own
    # dead-letter exchange, jobs.dlq.dlq) again, every time.
    assert dict(counts) == {"exchange.declare": 1, "queue.declare": 1, "queue.bind": 1}


def test_subscribing_again_after_the_exchange_was_deleted_binds_the_group_anew(
    kombu_broker: Factory,
) -> None:
    broker = kombu_broker()
    broker.subscribe("jobs", group="workers").close()
    prefix = broker.options.prefix
    delete_names({f"{prefix}|jobs"}, set())  # the queue stays, unbound
    with broker.subscribe("jobs", group="workers") as workers:
        broker.publish("jobs", "after")
        delivery = workers.receive(timeout=5)
        assert delivery is not None and delivery.body == "after"
        delivery.ack()
