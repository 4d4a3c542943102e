"""redis+list when a fetch's reply is lost on the way back, against a real
redis-server: :class:`LossyProxy` stands between the consumer and the server and
closes the consumer's connection when the reply to its ``BLMOVE`` comes (the server
moved the element into the consumer's processing list; the consumer never heard)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import brokerkit
from tests.conftest import RedisTarget
from tests.test_redis_stream_settle_retries import LossyProxy


@pytest.fixture
def proxy(redis_target: RedisTarget) -> Iterator[LossyProxy]:
    with LossyProxy(redis_target.host, redis_target.port) as lossy:
        yield lossy


def test_a_subscription_closed_after_a_lost_fetch_reply_strands_nothing(
    proxy: LossyProxy, redis_target: RedisTarget, prefix: str
) -> None:
    """The consumer reconnects and its receive ends before its next fetch, so its own
    reconciliation has not run when it closes: the close gives the moved element back
    (a rescuer never looks at a consumer that left)."""
    url = f"redis+list://127.0.0.1:{proxy.port}/{redis_target.db}?prefix={prefix}"
    with (
        brokerkit.connect(url) as consumer,
        brokerkit.connect(redis_target.url("redis+list"), prefix=prefix) as producer,
    ):
        subscription = consumer.subscribe("orders")
        assert subscription.receive(timeout=0) is None  # idle: the next fetch is a BLMOVE
        (message_id,) = producer.publish_many("orders", ["precious"])
        proxy.arm(b"BLMOVE")
        # the BLMOVE moves it at once, its reply is lost, the retry finds the queue empty
        assert subscription.receive(timeout=0.5) is None
        assert proxy.dropped == 1
        subscription.close()
        with producer.subscribe("orders") as other:
            delivery = other.receive(timeout=5)
            assert delivery is not None, "the element the lost reply moved was stranded"
            assert (delivery.id, delivery.attempt) == (message_id, 1)
            delivery.ack()
        info = producer.inspect("orders")
        assert (info.length, info.in_flight) == (0, 0)
