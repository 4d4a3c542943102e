"""What a subscription fetched but never returned goes back uncounted, on the backends
that promise it (memory, redis+list, redis+stream): no handler saw it, so the next
consumer gets it as a first delivery, and ``max_deliveries=1`` dead-letters none of it.
(NATS and kombu+amqp count the attempt themselves: see their pages.)"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brokerkit
from tests.conftest import RedisTarget

BACKENDS = ["memory", "redis+list", "redis+stream"]


@pytest.fixture
def connect(
    request: pytest.FixtureRequest, prefix: str
) -> Iterator[Callable[..., brokerkit.Broker]]:
    """``connect(scheme, **options)``: a broker of that scheme under this test's prefix
    (the memory ones share one named store), closed when the test ends."""
    made: list[brokerkit.Broker] = []
    store = f"memory://handback-{uuid.uuid4().hex[:8]}"

    def factory(scheme: str, **options: Any) -> brokerkit.Broker:
        if scheme == "memory":
            broker = brokerkit.connect(store, **options)
        else:
            target: RedisTarget = request.getfixturevalue("redis_target")
            broker = brokerkit.connect(target.url(scheme), prefix=prefix, **options)
        made.append(broker)
        return broker

    yield factory
    for broker in made:
        broker.close()


@pytest.mark.parametrize("scheme", BACKENDS)
@pytest.mark.parametrize("closing", ["close", "consume loop left"])
def test_a_closed_subscriptions_prefetch_comes_back_uncounted(
    connect: Callable[..., brokerkit.Broker], scheme: str, closing: str
) -> None:
    broker = connect(scheme, max_deliveries=1, visibility_timeout=60)
    ids = broker.publish_many("orders", [f"m{i}" for i in range(4)])
    if closing == "close":
        subscription = broker.subscribe("orders", prefetch=4)
        first = subscription.receive(timeout=5)
        assert first is not None
        first.ack()
        assert subscription.buffered == 3
        subscription.close()
    else:
        for first in broker.consume("orders", prefetch=4, timeout=5):
            first.ack()
            break
    other = connect(scheme, max_deliveries=1)
    with other.subscribe("orders", prefetch=4) as subscription:
        back = [subscription.receive(timeout=5) for _ in range(3)]
        assert None not in back, "a handed-back delivery did not come back"
        assert [d.id for d in back if d] == ids[1:], "handed back in another order"
        assert [d.attempt for d in back if d] == [1, 1, 1], "a hand-back counted an attempt"
        other.ack(*[d for d in back if d])
        assert subscription.receive(timeout=0) is None
    assert other.inspect(other.dead_letter_topic("orders")).length == 0, "dead-lettered"
    assert other.inspect("orders").in_flight == 0
