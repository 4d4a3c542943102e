"""redis+list when a fetch's reply is lost on the way back, against a real
redis-server: the server moved an element into the consumer's processing list, the
consumer never heard, and reconnected (which marks its state for reconciliation)."""

from __future__ import annotations

import brokerkit
from tests.conftest import RedisTarget


def test_a_subscription_closed_before_reconciling_a_lost_reply_strands_nothing(
    redis_target: RedisTarget, prefix: str
) -> None:
    """The consumer's next fetch would give the element back; a close that comes
    first does (a rescuer never looks at a consumer that left)."""
    with brokerkit.connect(redis_target.url("redis+list"), prefix=prefix) as broker:
        subscription = broker.subscribe("orders")
        assert subscription.receive(timeout=0) is None
        (message_id,) = broker.publish_many("orders", ["precious"])
        keys = broker._topic("orders").keys  # type: ignore[attr-defined]
        client = redis_target.client()
        try:
            # what the server did for a BLMOVE whose reply was lost
            moved = client.lmove(keys.queue, keys.processing(subscription.consumer))
            assert moved is not None
        finally:
            client.close()
        subscription.state.reconcile = True  # what the consumer's reconnect noted
        subscription.close()
        with broker.subscribe("orders") as other:
            delivery = other.receive(timeout=5)
            assert delivery is not None, "the element the lost reply moved was stranded"
            assert (delivery.id, delivery.attempt) == (message_id, 1)
            delivery.ack()
        info = broker.inspect("orders")
        assert (info.length, info.in_flight) == (0, 0)
