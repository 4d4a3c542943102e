"""redis+list: deliveries nobody saw, handed back by a closing subscription, go out in
batches again; the rule that a message that came back goes out alone (a poison message
takes only itself down) holds for those that were really delivered. Against a real
redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from tests.conftest import RedisTarget


@pytest.fixture
def broker(redis_target: RedisTarget, prefix: str) -> Iterator[RedisListBroker]:
    with brokerkit.connect(redis_target.url("redis+list"), prefix=prefix) as opened:
        assert isinstance(opened, RedisListBroker)
        yield opened


def _returned(broker: RedisListBroker, client: redis.Redis) -> int:
    keys = broker._topic("orders").keys
    return int(client.get(keys.returned) or 0)


def test_a_closed_subscriptions_buffer_comes_back_in_one_fetch(
    broker: RedisListBroker, redis_client: redis.Redis
) -> None:
    ids = broker.publish_many("orders", [f"m{i}" for i in range(50)])
    subscription = broker.subscribe("orders", prefetch=50)
    first = subscription.receive(timeout=5)
    assert first is not None
    first.ack()
    subscription.close()  # hands back the 49 nobody saw
    assert _returned(broker, redis_client) == 0
    with broker.subscribe("orders", prefetch=50) as again:
        delivery = again.receive(timeout=5)
        assert delivery is not None
        # one fetch leased all of them, not one
        assert broker.inspect("orders").in_flight == 49
        got = [delivery] + [again.receive(timeout=5) for _ in range(48)]
        assert [(d.id, d.attempt) for d in got if d is not None] == [(i, 1) for i in ids[1:]]
        broker.ack(*(d for d in got if d is not None))


def test_a_hand_back_above_a_message_that_came_back_is_counted(
    broker: RedisListBroker, redis_client: redis.Redis
) -> None:
    """The count covers the queue's head: what goes back above a counted message is
    counted too, so the nacked one beneath still goes out alone."""
    (nacked,) = broker.publish_many("orders", ["nacked"])
    holder = broker.subscribe("orders")
    held = holder.receive(timeout=5)
    assert held is not None
    broker.publish_many("orders", ["a", "b", "c"])
    buffered = broker.subscribe("orders", prefetch=3)
    assert buffered.receive(timeout=5) is not None
    held.nack()
    assert _returned(broker, redis_client) == 1
    buffered.close()  # hands back b and c above the nacked one
    assert _returned(broker, redis_client) == 3
    got = []
    with broker.subscribe("orders", prefetch=10) as again:
        for _ in range(3):
            delivery = again.receive(timeout=5)
            assert delivery is not None
            assert broker.inspect("orders").in_flight == 2  # alone, beside the held 'a'
            delivery.ack()
            got.append((delivery.id, delivery.attempt))
    assert got[-1] == (nacked, 2)
    holder.close()


@pytest.mark.parametrize("order", ["came back first", "came back second"])
def test_a_handed_back_message_that_came_back_before_still_goes_out_alone(
    broker: RedisListBroker, redis_client: redis.Redis, order: str
) -> None:
    (poison,) = broker.publish_many("orders", ["poison"])
    first = broker.subscribe("orders")
    delivery = first.receive(timeout=5)
    assert delivery is not None
    delivery.nack()
    came_back = first.receive(timeout=5)
    assert came_back is not None and came_back.attempt == 2
    (fresh_id,) = broker.publish_many("orders", ["fresh"])
    second = broker.subscribe("orders")
    fresh = second.receive(timeout=5)
    assert fresh is not None and fresh.id == fresh_id
    handed = [came_back, fresh] if order == "came back first" else [fresh, came_back]
    broker._hand_back(handed)  # as a close hands back what its subscription buffered
    # counted down to the one that came back: from the head, it and all above it
    assert _returned(broker, redis_client) == (1 if order == "came back first" else 2)
    with broker.subscribe("orders", prefetch=10) as again:
        got = again.receive(timeout=5)
        assert got is not None and got.id == handed[0].id
        assert broker.inspect("orders").in_flight == 1  # alone
        got.ack()
        last = again.receive(timeout=5)
        assert last is not None and last.id == handed[1].id
        last.ack()
    assert poison == came_back.id
    first.close()
    second.close()
