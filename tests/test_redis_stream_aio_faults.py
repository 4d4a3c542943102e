"""redis+stream over the asyncio API against hostile conditions: connections killed
while awaiting, a server restart and an outage while consuming, leases that run out,
poison entries, RESP3."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from tests.conftest import RedisTarget
from tests.redis_server import RedisServer
from tests.redis_stream_aio_support import PROMPT, Open, blocked_reads, poll, receive_all, run

#: Slack on top of a visibility timeout for a recovery to be seen (slow CI machines).
GRACE = 5.0


@pytest.fixture
def connect(redis_target: RedisTarget, prefix: str) -> Open:
    """``connect(**options)``: ``async with connect() as broker`` under this test's prefix."""
    url = redis_target.url("redis+stream", prefix=prefix)
    return lambda **options: brokerkit.aio.connect(url, **options)


def test_a_connection_killed_while_awaiting_is_reopened(
    connect: Open, redis_client: redis.Redis
) -> None:
    async def main() -> None:
        async with connect() as consumer, connect() as producer:
            subscription = await consumer.subscribe("jobs")
            task = asyncio.create_task(subscription.receive(timeout=PROMPT + 5))
            await poll(lambda: len(blocked_reads(redis_client)) == 1)
            for client_id in blocked_reads(redis_client):
                redis_client.client_kill_filter(_id=client_id)
            await producer.publish("jobs", "after the kill")
            delivery = await task
            assert delivery is not None and delivery.body == "after the kill"
            await delivery.ack()

    run(main())


def test_consumer_tasks_ride_out_a_server_restart(redis_server: RedisServer, prefix: str) -> None:
    url = redis_server.url("redis+stream") + f"?prefix={prefix}"

    async def main() -> None:
        async with brokerkit.aio.connect(url) as consumer, brokerkit.aio.connect(url) as producer:
            received: list[Any] = []

            async def work() -> None:
                async for delivery in consumer.consume("jobs", timeout=PROMPT + 10):
                    # Counted once acked: an ack still on its way when the server
                    # restarts (empty) would find its entry gone, rightly StaleDelivery.
                    await delivery.ack()
                    received.append(delivery.body)
                    if delivery.body == "after":
                        return

            task = asyncio.create_task(work())
            await producer.publish("jobs", "before")
            await poll(lambda: received == ["before"])
            # restart() blocks, so it runs in a thread: the consumer task goes on
            # awaiting on the loop while the server goes away and comes back.
            await asyncio.to_thread(redis_server.restart)
            await producer.publish("jobs", "after")
            await asyncio.wait_for(task, PROMPT + 10)
            assert received == ["before", "after"]

    run(main())


def test_an_ack_during_a_short_outage_succeeds_while_the_loop_runs_on(prefix: str) -> None:
    async def main(server: RedisServer) -> None:
        url = server.url("redis+stream") + f"?prefix={prefix}&reconnect_timeout=20"
        async with brokerkit.aio.connect(url) as broker:
            await broker.publish("s", "x")
            delivery = await (await broker.subscribe("s")).receive(timeout=1)
            assert delivery is not None
            server.kill()
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            async def restart_later() -> None:
                # Back after longer than redis-py's own few quick retries.
                await asyncio.sleep(1.5)
                await asyncio.to_thread(server.restart)

            tick = asyncio.create_task(ticker())
            restarting = asyncio.create_task(restart_later())
            await delivery.ack()  # retried, with asyncio sleeps, until the server is back
            await restarting
            tick.cancel()
            assert ticks > 20, "the loop stalled while the ack waited for the server"
            assert (await broker.inspect("s")).in_flight == 0

    with RedisServer(appendonly=True) as server:
        run(main(server))


def test_an_expired_lease_goes_to_another_consumer_with_the_next_attempt(connect: Open) -> None:
    vt = 0.3

    async def main() -> None:
        async with connect(visibility_timeout=vt) as hung, connect(visibility_timeout=vt) as other:
            message_id = await hung.publish("jobs", "x")
            held = await (await hung.subscribe("jobs")).receive(timeout=1)
            assert held is not None
            await hung._suspend_renewals()  # the consumer hangs: its lease runs out
            started = time.monotonic()
            [again] = await receive_all(await other.subscribe("jobs"), 1, within=vt + GRACE)
            assert again.id == message_id and again.attempt == 2
            assert time.monotonic() - started >= vt * 0.9
            await again.ack()
            with pytest.raises(brokerkit.StaleDelivery):
                await held.ack()

    run(main())


def test_the_reaper_task_dead_letters_an_expired_entry_past_max_deliveries(
    connect: Open, redis_client: redis.Redis
) -> None:
    vt = 0.3

    async def main() -> None:
        async with connect(visibility_timeout=vt, max_deliveries=1) as broker:
            await broker.publish("jobs", "poison")
            held = await (await broker.subscribe("jobs")).receive(timeout=1)
            assert held is not None
            await broker._suspend_renewals()
            # Nobody fetches again: only the background reaper task can move it.
            dlq = broker.stream_key("jobs.dlq")
            await poll(lambda: redis_client.xlen(dlq) == 1, within=vt + GRACE)
            info = await broker.inspect("jobs")
            assert (info.in_flight, info.dead_lettered) == (0, 1)

    run(main())


def test_an_undecodable_entry_is_delivered_raw_and_never_jams_the_group(
    connect: Open, redis_client: redis.Redis
) -> None:
    async def main() -> None:
        async with connect() as broker:
            fields: dict[Any, Any] = {"id": "x", "ct": "text/plain", "ts": "abc", "body": "z"}
            redis_client.xadd(broker.stream_key("s"), fields)
            good = await broker.publish("s", "good")
            got = [d async for d in broker.consume("s", timeout=0.5, prefetch=10)]
            assert [d.id for d in got][1:] == [good]
            assert got[0].id.startswith("raw-") and set(got[0].body) == set(fields)
            await broker.ack(*got)
            assert (await broker.inspect("s")).in_flight == 0

    run(main())


def test_consume_and_ack_over_resp3(redis_target: RedisTarget, prefix: str) -> None:
    url = redis_target.url("redis+stream", prefix=prefix, protocol="3")

    async def main() -> None:
        async with brokerkit.aio.connect(url) as broker:
            bodies = [{"n": i} for i in range(5)]
            ids = await broker.publish_many("orders", bodies, headers={"a": "b"})
            got = [d async for d in broker.consume("orders", timeout=0.3, prefetch=10)]
            assert [d.id for d in got] == ids
            assert [d.body for d in got] == bodies
            assert all(dict(d.headers) == {"a": "b"} for d in got)
            await broker.ack(*got)
            assert (await broker.inspect("orders")).in_flight == 0

    run(main())
