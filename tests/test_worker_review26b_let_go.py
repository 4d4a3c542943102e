"""A hard stop that cannot settle a delivery lets it go (review 26b, item 1).

The hard stop cancels a hung handler and nacks its delivery; when that nack is itself
cancelled (the slot's second join) the Redis backends put the delivery back under their
lease keeper, for its holder to settle again. The worker is gone and will not: unless it
lets the delivery go (marks it settled, so that the keeper stops renewing it), the lease
is renewed for as long as the broker stays open (a broker shared under ``running()``)
and the message never comes back, although the worker logs that it does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

import brokerkit.aio
from brokerkit._delivery_async import SETTLING
from tests.conftest import RedisTarget
from tests.test_redis_list_aio import eventually, run_async

SCHEMES = ["redis+list", "redis+stream"]


async def _not_settling(delivery: Any) -> bool:
    """Whether no ack or nack of ``delivery`` is on its way."""
    return delivery._settled is not SETTLING


@pytest.mark.parametrize("scheme", SCHEMES)
@run_async
async def test_a_hard_stops_cancelled_nack_lets_the_delivery_go(
    redis_target: RedisTarget, prefix: str, scheme: str
) -> None:
    url = redis_target.url(scheme)
    admin = aioredis.Redis(host=redis_target.host, port=redis_target.port, db=redis_target.db)
    try:
        async with (
            brokerkit.aio.connect(url, prefix=prefix, visibility_timeout=1) as broker,
            brokerkit.aio.connect(url, prefix=prefix, visibility_timeout=1) as other,
        ):
            watcher = await other.subscribe("jobs")  # a stream group reads from the start
            worker = brokerkit.aio.Worker(broker, grace=0)
            started = asyncio.Event()
            seen: list[Any] = []

            @worker.handler("jobs")
            async def job(body: Any, delivery: Any) -> None:
                seen.append(delivery)
                started.set()
                try:
                    await asyncio.Event().wait()  # hangs: the hard stop cancels it
                except asyncio.CancelledError:
                    # The server takes no writes from now on: the hard stop's nack waits
                    # in the pause until the slot's second join cancels it.
                    await admin.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
                    raise

            try:
                async with worker.running():
                    await broker.publish("jobs", "hangs")
                    await asyncio.wait_for(started.wait(), 10)
                (delivery,) = seen
                # The nack was cancelled while the server took no writes: never applied.
                await eventually(
                    lambda: _not_settling(delivery), "the hard stop's nack never ended"
                )
            finally:
                await admin.execute_command("CLIENT", "UNPAUSE")
            assert not worker.drained
            assert worker.stats()[0].retried == 0  # the nack did not settle it
            assert delivery.settled  # let go: nothing renews its lease
            assert delivery not in broker._keeper.held()  # type: ignore[attr-defined]
            # The broker stays open; the lease runs out and the message comes back.
            again = await watcher.receive(timeout=10)
            assert again is not None
            assert again.id == delivery.id
            assert again.attempt == 2
            await again.ack()
            await eventually(lambda: _in_flight_none(broker, "jobs"), "the message was never acked")
    finally:
        await admin.aclose()


async def _in_flight_none(broker: Any, topic: str) -> bool:
    return bool((await broker.inspect(topic)).in_flight == 0)
