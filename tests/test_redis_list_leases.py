"""redis+list leases against a real redis-server: renewals racing settlements, and
extensions by hand that the background renewals must not cut short."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from brokerkit.backends.redis.list import RedisListBroker


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., RedisListBroker]:
    """``connect(**options) -> RedisListBroker`` under this test's prefix; all closed after."""
    return functools.partial(redis_broker, "redis+list")


def test_a_renewal_racing_an_ack_reports_no_lost_lease(
    connect, caplog: pytest.LogCaptureFixture
) -> None:
    broker = connect()
    broker.publish_many("orders", ["a", "b"])
    subscription = broker.subscribe("orders", prefetch=2)
    acked, kept = subscription.receive(timeout=5), subscription.receive(timeout=5)
    assert acked is not None and kept is not None
    # The keeper's beat looks at what it holds, then an ack settles one of them
    # before the beat's renewal reaches the server.
    beat = broker._keeper.held()
    assert {id(d) for d in beat} == {id(acked), id(kept)}
    acked.ack()
    with caplog.at_level(logging.WARNING, logger="brokerkit.redis"):
        broker._renew(beat)
    assert [r.getMessage() for r in caplog.records] == []
    kept.ack()  # still renewed and live
    assert broker.inspect("orders").in_flight == 0


def server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_the_renewals_never_cut_a_longer_extension_short(
    connect, redis_client: redis.Redis
) -> None:
    vt = 1.0
    holder, other = connect(visibility_timeout=vt), connect()
    holder.publish("orders", "long job")
    subscription = holder.subscribe("orders")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    details = holder.inspect("orders").details
    asked_at = server_ms(redis_client)
    delivery.extend(seconds=3 * vt)
    # Wait (polling, with a deadline) for the next background renewal: each one
    # pushes the consumer's heartbeat deadline later.
    beat = redis_client.zscore(details["consumers_key"], subscription.consumer)
    assert beat is not None
    limit = time.monotonic() + 10
    while redis_client.zscore(details["consumers_key"], subscription.consumer) == beat:
        assert time.monotonic() < limit, "no renewal ran"
        time.sleep(0.02)
    # the delivery's own value, or its batch's when it was all the batch leased
    nonce, _, consumer = delivery.receipt.partition(":")
    batch = nonce.rstrip("0123456789") + ":" + consumer
    value = redis_client.hget(details["expiry_key"], delivery.receipt) or redis_client.hget(
        details["expiry_key"], batch
    )
    deadline = int(value.split(b".")[0])
    assert deadline >= asked_at + 3000 * vt  # still the lease extend() promised
    while server_ms(redis_client) <= asked_at + 2000 * vt:
        assert time.monotonic() < limit, "the server's clock never passed two timeouts"
        time.sleep(0.02)
    assert other.rescue("orders") == 0
    delivery.ack()  # not stale
    assert other.inspect("orders").in_flight == 0
