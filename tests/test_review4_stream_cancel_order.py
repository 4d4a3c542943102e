"""redis+stream under asyncio: receives cut off (cancelled, timed out) while their fetch
is on its way keep ORDERED for one consumer. The cut-off receive's fetch hands back
what it brought; the entries handed back must come out again before any later entry,
however far the consumer's look for idle entries (the claim cursor) had gone.
docs/asyncio.md: the next receive waits for that fetch "so one consumer still sees the
messages in publish order (ORDERED)"."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brokerkit.aio
from brokerkit.aio import AsyncBroker, AsyncDelivery, AsyncSubscription
from tests.conftest import RedisTarget

pytestmark = pytest.mark.redis_stream

#: Seconds any receive of these tests may wait at most: a hang guard, never a pace.
GUARD = 30.0


async def _receive_cut_off_at_its_reply(
    broker: AsyncBroker, subscription: AsyncSubscription
) -> AsyncDelivery | None:
    """A receive whose caller is cancelled just as its fetch's reply comes in: what
    the fetch brought is handed back. A receive that needs no fetch (its subscription
    holds prefetched deliveries) is not cut off: its delivery is returned."""
    real_fetch: Any = broker._fetch
    receiving: asyncio.Future[AsyncDelivery | None] | None = None

    async def fetch_then_cancel(sub: Any, count: int, timeout: float) -> Any:
        got = await real_fetch(sub, count, timeout)
        assert receiving is not None
        receiving.cancel()
        return got

    broker._fetch = fetch_then_cancel  # type: ignore[method-assign]
    try:
        receiving = asyncio.ensure_future(subscription.receive(timeout=GUARD))
        with contextlib.suppress(asyncio.CancelledError):
            return await receiving
        return None
    finally:
        del broker._fetch  # the class's own again


async def _received(subscription: AsyncSubscription, count: int) -> list[tuple[Any, int]]:
    got = []
    for _ in range(count):
        delivery = await subscription.receive(timeout=GUARD)
        assert delivery is not None, f"only {got} came"
        got.append((delivery.body, delivery.attempt))
        await delivery.ack()
    return got


@pytest.mark.parametrize("prefetch", [1, 3, 10])
@pytest.mark.parametrize("cut_offs", [1, 2, 3])
def test_entries_handed_back_by_cut_off_receives_come_out_first(
    redis_target: RedisTarget, prefix: str, prefetch: int, cut_offs: int
) -> None:
    """Each cut-off receive's fetch takes the first entries (the first time as new
    ones, then as ones handed back, claimed), and hands them back."""

    async def main() -> list[tuple[Any, int]]:
        url = redis_target.url("redis+stream")
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            subscription = await broker.subscribe("jobs", group="g", prefetch=prefetch)
            await broker.publish_many("jobs", list(range(5)))
            for _ in range(cut_offs):
                assert await _receive_cut_off_at_its_reply(broker, subscription) is None
            got = await _received(subscription, 5)
            await subscription.close()
            return got

    assert asyncio.run(main()) == [(i, 1) for i in range(5)]


#: A receive: ``None`` runs to its end; a number is cancelled after that many seconds
#: (if it has not ended by then); ``"reply"`` is cancelled as its fetch's reply comes.
RECEIVES = st.lists(
    st.one_of(st.none(), st.floats(0, 0.004), st.just("reply")), min_size=1, max_size=40
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(receives=RECEIVES, count=st.integers(1, 30), prefetch=st.integers(1, 10))
def test_one_consumer_sees_publish_order_whatever_receives_are_cut_off(
    redis_target: RedisTarget, receives: list[Any], count: int, prefetch: int
) -> None:
    """Messages published while receives are cut off at random moments: the consumer
    gets each once, in publish order (a cut-off receive's message comes again,
    counted as the same attempt)."""

    async def main() -> list[Any]:
        url = redis_target.url("redis+stream")
        prefix = f"bkt-order-{uuid.uuid4().hex[:12]}"
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            subscription = await broker.subscribe("jobs", group="g", prefetch=prefetch)

            async def produce() -> None:
                for i in range(count):
                    await broker.publish("jobs", i)
                    if i % 3 == 0:
                        await asyncio.sleep(0)

            producing = asyncio.ensure_future(produce())
            got: list[Any] = []
            for how in receives:
                if len(got) == count:
                    break
                delivery = None
                if how == "reply":
                    delivery = await _receive_cut_off_at_its_reply(broker, subscription)
                else:
                    receiving = asyncio.ensure_future(subscription.receive(timeout=GUARD))
                    if how is not None:
                        await asyncio.wait({receiving}, timeout=how)
                        receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        delivery = await receiving
                        assert delivery is not None
                if delivery is not None:
                    got.append((delivery.body, delivery.attempt))
                    await delivery.ack()
            await producing
            got += await _received(subscription, count - len(got))
            await subscription.close()
            await broker.purge("jobs")
            return got

    got = asyncio.run(main())
    assert [body for body, _ in got] == list(range(count))
    assert all(attempt == 1 for _, attempt in got), got
