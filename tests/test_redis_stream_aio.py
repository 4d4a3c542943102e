"""redis+stream over the asyncio API (``brokerkit.aio``) against a real redis-server:
the native asyncio broker, cancellation and close, and a loop that never stalls."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.aio import AsyncDelivery, AsyncSubscription
from brokerkit.backends.redis.stream import (
    AsyncRedisStreamBroker,
    LogEntry,
    RedisStreamBroker,
    StreamReceipt,
)
from tests.conftest import RedisTarget
from tests.loop_lag import Ticker, frozen_heap
from tests.redis_stream_aio_support import (
    PROMPT,
    Open,
    blocked_reads,
    poll,
    receive_all,
    run,
    stream_tasks,
)


@pytest.fixture
def url(redis_target: RedisTarget, prefix: str) -> str:
    return redis_target.url("redis+stream", prefix=prefix)


@pytest.fixture
def connect(url: str) -> Open:
    """``connect(**options)``: ``async with connect() as broker`` under this test's prefix."""
    return lambda **options: brokerkit.aio.connect(url, **options)


# -- the native broker -------------------------------------------------------------


def test_aio_connect_gives_the_native_asyncio_broker(connect: Open) -> None:
    async def main() -> None:
        async with connect() as broker:
            assert type(broker) is AsyncRedisStreamBroker
            assert broker.capabilities == RedisStreamBroker.capabilities

    run(main())


def test_publish_consume_ack_round_trip_on_the_loop_thread_alone(
    connect: Open, redis_client: redis.Redis
) -> None:
    threads = threading.active_count()

    async def main() -> None:
        async with connect() as broker:
            bodies = [b"\x00raw", "text", {"n": 1}, [1, 2], 3]
            ids = await broker.publish_many("orders", bodies, headers={"k": "v"})
            ids.append(await broker.publish("orders", "last"))
            got = [d async for d in broker.consume("orders", timeout=0.5, prefetch=10)]
            assert [d.id for d in got] == ids
            assert [d.body for d in got] == [*bodies, "last"]
            assert all(d.attempt == 1 and d.headers["k"] == "v" for d in got[:-1])
            assert isinstance(got[0].receipt, StreamReceipt)
            await broker.ack(*got)
            info = await broker.inspect("orders")
            assert (info.length, info.in_flight) == (6, 0)
            assert redis_client.xlen(broker.stream_key("orders")) == 6
            # Native: no thread per call, nor a thread for the lease renewals.
            assert threading.active_count() == threads

    run(main())


def test_two_groups_each_get_every_message_and_members_of_one_split_them(connect: Open) -> None:
    async def drain(subscription: AsyncSubscription) -> list[str]:
        got = []
        while (delivery := await subscription.receive(timeout=0.5)) is not None:
            got.append(delivery.id)
            await delivery.ack()
        return got

    async def main() -> None:
        async with connect() as broker:
            email = await broker.subscribe("orders", group="email")
            a = await broker.subscribe("orders", group="billing", prefetch=3)
            b = await broker.subscribe("orders", group="billing", prefetch=3)
            ids = await broker.publish_many("orders", range(30))
            seen_email, seen_a, seen_b = await asyncio.gather(drain(email), drain(a), drain(b))
            assert seen_email == ids
            assert not set(seen_a) & set(seen_b)
            assert sorted(seen_a + seen_b) == sorted(ids)

    run(main())


def test_nack_requeues_at_once_and_dead_letters_without_requeue(connect: Open) -> None:
    async def main() -> None:
        async with (
            connect(visibility_timeout=60) as first,
            connect(visibility_timeout=60) as second,
        ):
            await first.publish("jobs", "retry me")
            delivery = await (await first.subscribe("jobs")).receive(timeout=1)
            assert delivery is not None
            await delivery.nack()
            again = await (await second.subscribe("jobs")).receive(timeout=PROMPT)
            assert again is not None and again.id == delivery.id
            assert again.attempt == 2 and again.redelivered
            await again.nack(requeue=False)
            dead = await (await second.subscribe("jobs.dlq")).receive(timeout=1)
            assert dead is not None and dead.id == delivery.id
            assert dead.headers["x-dead-letter-reason"] == "rejected"
            assert (await second.inspect("jobs")).dead_lettered == 1
            await dead.ack()
            # the stream keeps the acked entry; it is no longer waiting to be dealt with
            assert (await second.inspect("jobs")).dead_lettered == 0

    run(main())


def test_a_poison_message_is_dead_lettered_after_max_deliveries(connect: Open) -> None:
    async def main() -> None:
        async with connect(max_deliveries=3) as broker:
            message_id = await broker.publish("orders", "poison")
            subscription = await broker.subscribe("orders")
            attempts = []
            while (delivery := await subscription.receive(timeout=1)) is not None:
                attempts.append(delivery.attempt)
                await delivery.nack()
            assert attempts == [1, 2, 3]
            dead = await (await broker.subscribe("orders.dlq")).receive(timeout=1)
            assert dead is not None and dead.id == message_id
            assert dead.headers["x-deliveries"] == "3"
            await dead.ack()

    run(main())


def test_a_late_ack_after_another_consumer_claimed_is_stale(
    connect: Open, redis_client: redis.Redis
) -> None:
    async def main() -> None:
        async with connect() as broker:
            await broker.publish_many("jobs", ["a", "b"])
            subscription = await broker.subscribe("jobs", group="g", prefetch=2)
            first = await subscription.receive(timeout=1)
            second = await subscription.receive(timeout=1)
            assert first is not None and second is not None
            key = broker.stream_key("jobs")
            redis_client.xclaim(key, "g", "other", 0, [first.receipt.entry_id], justid=True)
            with pytest.raises(brokerkit.StaleDelivery) as caught:
                await broker.extend(first, second)
            assert caught.value.deliveries == (first,)
            with pytest.raises(brokerkit.StaleDelivery):
                await first.ack()
            await second.ack()
            pending = redis_client.xpending_range(key, "g", "-", "+", 10)
            assert [p["consumer"] for p in pending] == [b"other"]

    run(main())


def test_leases_are_renewed_by_a_task_while_a_handler_runs_long(connect: Open) -> None:
    vt = 0.5

    async def main() -> None:
        async with (
            connect(visibility_timeout=vt) as first,
            connect(visibility_timeout=vt) as second,
        ):
            await first.publish("jobs", "slow")
            delivery = await (await first.subscribe("jobs")).receive(timeout=1)
            assert delivery is not None
            assert [t.get_name() for t in stream_tasks()] == [
                f"brokerkit-stream-leases-{id(first):x}"
            ]
            other = await second.subscribe("jobs")
            # Three visibility timeouts of work: the renewal task keeps the lease.
            assert await other.receive(timeout=3 * vt) is None
            await delivery.ack()
        assert stream_tasks() == []  # close() ended the renewal task

    run(main())


def test_read_and_tail_give_the_stream_as_a_log(connect: Open) -> None:
    async def main() -> None:
        async with connect() as broker:
            await broker.publish_many("orders", range(5))
            entries = await broker.read("orders", count=3)
            assert all(isinstance(e, LogEntry) for e in entries)
            assert [e.message.body for e in entries] == [0, 1, 2]
            rest = await broker.read("orders", after=entries[-1].position)
            assert [e.message.body for e in rest] == [3, 4]
            assert [e.message.body async for e in await broker.tail("orders", timeout=0.2)] == [
                0,
                1,
                2,
                3,
                4,
            ]
            tail = await broker.tail("orders", after="latest", timeout=1)
            await broker.publish("orders", "new")
            assert [e.message.body async for e in tail] == ["new"]
            assert await broker.create_group("orders", "late", start="latest")
            assert await broker.trim("orders", maxlen=2, exact=True) == 4
            assert await broker.delete_group("orders", "late")

    run(main())


# -- cancellation, close -------------------------------------------------------------


def test_a_consumer_task_cancelled_mid_batch_hands_its_prefetched_deliveries_back(
    connect: Open,
) -> None:
    async def main() -> None:
        async with (
            connect(visibility_timeout=60) as crashed,
            connect(visibility_timeout=60) as other,
        ):
            ids = await crashed.publish_many("jobs", range(10))
            handling = asyncio.Event()

            async def worker() -> None:
                async for _delivery in crashed.consume("jobs", prefetch=10):
                    handling.set()
                    await asyncio.Event().wait()  # a handler that never finishes

            task = asyncio.create_task(worker())
            await asyncio.wait_for(handling.wait(), PROMPT)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The nine buffered deliveries come back at once, not after 60 s; the one
            # being handled stays leased to the crashed consumer while it lives.
            got = await receive_all(await other.subscribe("jobs", prefetch=10), 9)
            assert sorted(d.id for d in got) == sorted(ids[1:])
            await other.ack(*got)

    run(main())


def test_a_task_cancelled_while_its_fetch_is_on_the_wire_strands_nothing(
    connect: Open, url: str, redis_client: redis.Redis
) -> None:
    async def main() -> None:
        async with (
            connect(visibility_timeout=60) as crashed,
            connect(visibility_timeout=60) as other,
        ):
            subscription = await crashed.subscribe("jobs", prefetch=10)
            task = asyncio.create_task(subscription.receive(timeout=None))
            await poll(lambda: len(blocked_reads(redis_client)) == 1)
            # Published from this thread, blocking it: the server hands the entries to
            # the blocked XREADGROUP (leasing them to `crashed`) before the loop runs
            # again, and the task is cancelled before it reads the reply. Unless that
            # fetch runs on and hands them back, they sit unseen for 60 s.
            with brokerkit.connect(url) as producer:
                ids = producer.publish_many("jobs", range(5))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            got = await receive_all(await other.subscribe("jobs", prefetch=10), 5)
            assert sorted(d.id for d in got) == sorted(ids)
            # Leased to `crashed`, but handed back unseen: no attempt was counted.
            assert all(d.attempt == 1 for d in got)
            await other.ack(*got)

    run(main())


def test_leaving_async_for_early_hands_the_rest_of_the_batch_back(connect: Open) -> None:
    async def main() -> None:
        async with connect(visibility_timeout=60) as first, connect(visibility_timeout=60) as other:
            ids = await first.publish_many("jobs", range(10))
            async for delivery in first.consume("jobs", prefetch=10):
                await delivery.ack()
                break
            got = await receive_all(await other.subscribe("jobs", prefetch=10), 9)
            assert sorted(d.id for d in got) == sorted(ids[1:])
            await other.ack(*got)

    run(main())


def test_close_during_a_receive_ends_it_cleanly(connect: Open, redis_client: redis.Redis) -> None:
    async def main() -> None:
        broker = await connect()
        subscription = await broker.subscribe("jobs")
        consumed: list[AsyncDelivery] = []

        async def consume() -> None:
            async for delivery in broker.consume("jobs"):
                consumed.append(delivery)

        receiving = asyncio.create_task(subscription.receive(timeout=None))
        looping = asyncio.create_task(consume())
        await poll(lambda: len(blocked_reads(redis_client)) == 2)  # both are waiting
        started = time.monotonic()
        await broker.close()
        with pytest.raises(brokerkit.BrokerClosed):
            await receiving
        await asyncio.wait_for(looping, PROMPT)  # the consume loop simply ends
        assert consumed == []
        assert time.monotonic() - started < PROMPT
        assert stream_tasks() == []

    run(main())


# -- the event loop is never blocked ------------------------------------------------


def test_the_loop_never_stalls_while_50_consumer_tasks_drain_10000_messages(
    connect: Open, capsys: pytest.CaptureFixture[str]
) -> None:
    total, consumers = 10_000, 50

    async def main() -> tuple[Ticker, float]:
        async with connect() as broker:
            await broker.publish_many("load", range(total))
            counted = 0

            async def consumer() -> None:
                nonlocal counted
                async for delivery in broker.consume("load", group="g", timeout=1, prefetch=10):
                    await delivery.ack()
                    counted += 1

            started = time.perf_counter()
            async with Ticker() as ticker:
                await asyncio.gather(*(consumer() for _ in range(consumers)))
            took = time.perf_counter() - started
            assert counted == total
            assert (await broker.inspect("load")).in_flight == 0
            return ticker, took

    with frozen_heap():
        ticker, took = run(main(), limit=180)
    with capsys.disabled():
        print("\n" + ticker.report(f"{consumers} tasks drained {total} messages in {took:.1f} s"))
    assert ticker.net < 0.1


# -- background work ends with the broker -------------------------------------------


def test_close_ends_the_lease_and_reaper_tasks(connect: Open) -> None:
    async def main() -> None:
        async with connect(max_deliveries=2) as broker:
            await broker.publish("jobs", "x")
            delivery = await (await broker.subscribe("jobs")).receive(timeout=1)
            assert delivery is not None
            names = sorted(t.get_name() for t in stream_tasks())
            assert names == [
                f"brokerkit-stream-leases-{id(broker):x}",
                f"brokerkit-stream-reaper-{id(broker):x}",
            ]
        assert stream_tasks() == []

    run(main())
