"""redis+list leases against a real redis-server: renewals racing settlements, and
extensions by hand that the background renewals must not cut short."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import pytest

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
