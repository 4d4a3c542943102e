"""A settlement that fails or is cancelled leaves its deliveries unsettled, to be
settled again (docs/asyncio.md, "Cancelling an ack() or nack()"), and so still this
consumer's: their leases are renewed until then, and no other consumer gets them while
their own lives (docs/concepts.md). Before, the Redis backends stopped renewing them
as the settlement began and never took them back (redis+list on any failure, both
backends on a cancellation), so a second consumer got the message as attempt 2 and
the holder's next settle raised ``StaleDelivery``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import IncompatibleTopic
from tests.conftest import RedisTarget
from tests.test_redis_list_aio import eventually, run_async

SCHEMES = ["redis+list", "redis+stream"]


async def _script_waiting_in_pause(admin: aioredis.Redis) -> bool:
    """Whether a client waits, blocked by ``CLIENT PAUSE``, to run a script."""
    clients: list[dict[str, Any]] = await admin.client_list()
    return any("b" in c["flags"] and c["cmd"].startswith("evalsha") for c in clients)


async def _no_script_waiting_in_pause(admin: aioredis.Redis) -> bool:
    return not await _script_waiting_in_pause(admin)


@pytest.mark.parametrize("scheme", SCHEMES)
@run_async
async def test_a_cancelled_ack_leaves_the_lease_renewed(
    redis_target: RedisTarget, prefix: str, scheme: str
) -> None:
    url = redis_target.url(scheme)
    admin = aioredis.Redis(host=redis_target.host, port=redis_target.port, db=redis_target.db)
    try:
        async with (
            brokerkit.aio.connect(url, prefix=prefix, visibility_timeout=2) as holder,
            brokerkit.aio.connect(url, prefix=prefix, visibility_timeout=2) as other,
        ):
            watcher = await other.subscribe("orders")  # a stream group reads from the start
            await holder.publish("orders", "long job")
            held = await (await holder.subscribe("orders")).receive(timeout=5)
            assert held is not None
            # The ack's script waits on the server; the ack is cancelled meanwhile, and
            # its connection closed before the server would run it.
            await admin.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
            try:
                ack = asyncio.ensure_future(held.ack())
                await eventually(lambda: _script_waiting_in_pause(admin), "the ack never came")
                ack.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await ack
                await eventually(
                    lambda: _no_script_waiting_in_pause(admin), "the ack's connection stayed"
                )
            finally:
                await admin.execute_command("CLIENT", "UNPAUSE")
            assert not held.settled
            # Two and a half visibility timeouts: renewed all along, it goes to nobody else.
            assert await watcher.receive(timeout=5.0) is None
            await held.ack()  # still this consumer's: not stale
            assert (await holder.inspect("orders")).in_flight == 0
    finally:
        await admin.aclose()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_failed_nack_leaves_the_lease_renewed(
    redis_broker: Any, redis_target: RedisTarget, prefix: str, scheme: str
) -> None:
    holder: brokerkit.Broker = redis_broker(scheme, visibility_timeout=2)
    other: brokerkit.Broker = redis_broker(scheme, visibility_timeout=2)
    watcher = other.subscribe("orders")
    holder.publish("orders", "poison")
    held = holder.subscribe("orders").receive(timeout=5)
    assert held is not None
    admin = redis_target.client()
    dead_letters = f"{prefix}:{{orders}}.dlq"  # the key both backends dead-letter to
    admin.set(dead_letters, "not a list or stream")
    with pytest.raises(IncompatibleTopic):
        held.nack(requeue=False)
    admin.delete(dead_letters)
    assert not held.settled
    assert watcher.receive(timeout=5.0) is None  # renewed all along
    held.nack(requeue=False)  # dead-lettered now, not stale
    assert holder.inspect("orders").dead_lettered == 1


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_delivery_let_go_after_a_failed_settle_is_neither_renewed_nor_kept(
    redis_broker: Any, redis_target: RedisTarget, prefix: str, scheme: str
) -> None:
    """The worker lets go of a delivery it cannot settle (marked settled, unsettled on
    the server) so that its lease runs out: the keeper, which took it back after the
    failed settle, must then drop it, not hold it (and its message) for the broker's
    life."""
    holder: brokerkit.Broker = redis_broker(scheme)
    holder.publish_many("orders", ["a", "b"])
    subscription = holder.subscribe("orders", prefetch=2)
    let_go, kept = subscription.receive(timeout=5), subscription.receive(timeout=5)
    assert let_go is not None and kept is not None
    admin = redis_target.client()
    dead_letters = f"{prefix}:{{orders}}.dlq"
    admin.set(dead_letters, "not a list or stream")
    with pytest.raises(IncompatibleTopic):
        let_go.nack(requeue=False)
    admin.delete(dead_letters)
    keeper = holder._keeper  # type: ignore[attr-defined]
    assert let_go in keeper._held  # taken back: still this consumer's to settle
    let_go._mark_settled()  # what the worker's let_go does
    assert keeper.held() == [kept]
    assert let_go not in keeper._held
    kept.ack()
