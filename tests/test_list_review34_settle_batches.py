"""redis+list: a settle or extend call names receipts of at most _BATCHES_PER_CALL
batches, however the deliveries were fetched.

Before, a call was bounded by receipts only (1,000 an extension, 250 an ack or a nack),
and a consumer fed one message a fetch holds a batch a delivery: an extension of 10,000
such took 7-8.5 ms of server time a call (1,000 batches each), an ack or a nack 2.7-3.5
ms, against the issue's 5 ms for any bookkeeping call."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import brokerkit
from brokerkit.backends.redis.list.plan import batch_runs
from brokerkit.backends.redis.list.settle import _BATCHES_PER_CALL, call_cuts
from tests.redis_server import RedisServer

HELD = 5 * _BATCHES_PER_CALL


def _runs(receipts: list[str]) -> int:
    """How many runs of one batch the scripts read in ``receipts``."""
    named, runs, at = batch_runs(receipts), 0, 0
    while at < len(named):
        runs += 1
        at += 2 + int(named[at + 1])
    return runs


receipt = st.builds(
    lambda nonce, index, consumer: f"{nonce}{index}:{consumer}",
    st.sampled_from(["a-", "b-", "ab-", ""]),
    st.integers(0, 12),
    st.sampled_from(["C", "D"]),
)


@example(["a-1:C", "a-2:C", "a-3:C", "b-1:C"], 2, 1)  # a batch cut by the receipts' bound
@example(["a-0:C"] * 5 + ["a-0:D"], 2, 1)
@given(st.lists(receipt, max_size=60), st.integers(1, 9), st.integers(1, 5))
def test_calls_cover_the_receipts_in_order_within_both_bounds(
    receipts: list[str], most: int, batches: int
) -> None:
    cuts = call_cuts(receipts, most, batches)
    assert [i for start, end in cuts for i in range(start, end)] == list(range(len(receipts)))
    for start, end in cuts:
        assert 0 < end - start <= most or not receipts
        assert _runs(receipts[start:end]) <= batches


@pytest.mark.redis_list
@pytest.mark.parametrize("operation", ["extend", "ack", "nack"])
def test_one_delivery_batches_are_settled_a_bounded_number_a_call(
    redis_server: RedisServer, operation: str
) -> None:
    client = redis_server.client()
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=60) as broker:
        broker.publish_many("t", [b"m%d" % i for i in range(HELD)])
        subscription = broker.subscribe("t", prefetch=1)
        held = [subscription.receive(timeout=5) for _ in range(HELD)]
        deliveries = [d for d in held if d is not None]
        assert len(deliveries) == HELD
        client.config_resetstat()
        if operation == "extend":
            broker.extend(*deliveries, seconds=120)
        elif operation == "ack":
            broker.ack(*deliveries)
        else:
            broker.nack(*deliveries)
        calls = client.info("commandstats")["cmdstat_evalsha"]["calls"]
        assert calls >= math.ceil(HELD / _BATCHES_PER_CALL), calls
        if operation == "extend":
            broker.ack(*deliveries)  # still theirs: no StaleDelivery
        elif operation == "nack":  # back in the order they were, the first next out
            again = [subscription.receive(timeout=5) for _ in range(HELD)]
            assert [d.message.payload for d in again if d is not None] == [
                d.message.payload for d in deliveries
            ]
        subscription.close()
