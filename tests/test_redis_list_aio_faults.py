"""redis+list over the asyncio API under faults and load, against real servers: a
connection killed while a consumer awaits (CLIENT KILL), a restarted server, and 50
consumer tasks draining 10,000 messages while a ticker measures the event loop's lag
and every step of the loop is checked for blocking (see :class:`LoopWatch`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from brokerkit._subscription_async import MAX_FETCH_WAIT
from brokerkit.exceptions import StaleDelivery
from tests.conftest import RedisTarget
from tests.redis_server import RedisServer
from tests.test_redis_list_aio import Brokers, eventually, run_async

ROOT = Path(__file__).resolve().parent.parent

#: The extra time, past a visibility timeout, that a redelivery may take.
SLACK = 3.0


async def _kill_clients(admin: aioredis.Redis, name: str, command: str | None = None) -> int:
    killed = 0
    for client in await admin.client_list():
        if client.get("name") == name and (command is None or client.get("cmd") == command):
            await admin.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


async def _wait_for_blocked_client(admin: aioredis.Redis, name: str) -> None:
    async def blocked() -> bool:
        clients = await admin.client_list()
        return any(c.get("name") == name and c.get("cmd") == "blmove" for c in clients)

    await eventually(blocked, "the consumer never blocked in BLMOVE")


def _admin(server: RedisServer) -> aioredis.Redis:
    return aioredis.Redis(host="127.0.0.1", port=server.port, socket_timeout=10)


@run_async
async def test_a_connection_killed_while_a_consumer_awaits_loses_nothing(
    redis_server: RedisServer, prefix: str
) -> None:
    admin = _admin(redis_server)
    try:
        async with Brokers(redis_server.url("redis+list"), prefix) as connect:
            publisher = await connect(visibility_timeout=1)
            consumer = await connect("?client_name=victim", visibility_timeout=1)
            subscription = await consumer.subscribe("orders", prefetch=5)
            waiting = asyncio.ensure_future(subscription.receive(timeout=30))
            await _wait_for_blocked_client(admin, "victim")
            assert await _kill_clients(admin, "victim", "blmove") == 1
            await publisher.publish("orders", "after the kill")
            delivery = await waiting
            assert delivery is not None and delivery.body == "after the kill"
            await delivery.ack()
            assert (await publisher.inspect("orders")).in_flight == 0
    finally:
        await admin.aclose()


@run_async
async def test_client_kill_mid_stream_loses_nothing(redis_server: RedisServer, prefix: str) -> None:
    admin = _admin(redis_server)
    expected = set(range(300))
    seen: set[int] = set()
    stale: list[StaleDelivery] = []
    try:
        async with Brokers(redis_server.url("redis+list"), prefix) as connect:
            publisher = await connect(visibility_timeout=1)
            consumer = await connect("?client_name=victim", visibility_timeout=1)
            await publisher.publish_many("orders", range(200))

            async def consume() -> None:
                subscription = await consumer.subscribe("orders", prefetch=5)
                while seen != expected:
                    delivery = await subscription.receive(timeout=1)
                    if delivery is None:
                        continue
                    seen.add(delivery.body)
                    try:
                        await delivery.ack()
                    except StaleDelivery as exc:  # the ack's reply was lost, then retried
                        stale.append(exc)

            task = asyncio.ensure_future(consume())
            kills = 0
            for count in (50, 120):
                await eventually(lambda c=count: _at_least(seen, c), f"stuck before {count}", 30)  # type: ignore[misc]
                kills += await _kill_clients(admin, "victim")
            await eventually(lambda: _at_least(seen, 200), "stuck before 200", 30)
            await _wait_for_blocked_client(admin, "victim")
            kills += await _kill_clients(admin, "victim", "blmove")
            await publisher.publish_many("orders", range(200, 300))
            await asyncio.wait_for(task, 60)
            assert seen == expected, f"lost: {sorted(expected - seen)[:10]}"
            drain = await publisher.subscribe("orders")
            while (late := await drain.receive(timeout=1 + SLACK)) is not None:
                assert late.body in expected
                await late.ack()
            info = await publisher.inspect("orders")
            assert (info.length, info.in_flight) == (0, 0)
    finally:
        await admin.aclose()
    assert kills >= 3
    print(f"\n{kills} connections killed, {len(stale)} acks reported stale after a lost reply")


async def _at_least(seen: set[int], count: int) -> bool:
    return len(seen) >= count


@run_async
async def test_a_server_restart_while_consuming_loses_nothing(prefix: str) -> None:
    with RedisServer(appendonly=True) as server:
        admin = _admin(server)
        try:
            async with Brokers(server.url("redis+list"), prefix) as connect:
                broker = await connect("?client_name=victim", visibility_timeout=2)
                await broker.publish_many("orders", range(50))
                subscription = await broker.subscribe("orders", prefetch=5)
                seen: set[int] = set()

                async def consume(until: int) -> None:
                    while len(seen) < until:
                        delivery = await subscription.receive(timeout=10)
                        missing = sorted(set(range(50)) - seen)
                        assert delivery is not None, f"lost: {missing}"
                        seen.add(delivery.body)
                        # An ack across the restart whose reply was lost, or whose lease
                        # ran out while the server was down, is reported stale
                        # (docs/deployments.md): the message comes again.
                        with contextlib.suppress(StaleDelivery):
                            await delivery.ack()

                await consume(10)
                # The restart runs in a thread (it waits for the new server), while the
                # consumer task keeps consuming on the loop through it.
                restart = asyncio.ensure_future(asyncio.to_thread(server.restart))
                await consume(50)
                await restart
                assert seen == set(range(50))
                # Restart again while the consumer awaits BLMOVE on the empty queue.
                waiting = asyncio.ensure_future(subscription.receive(timeout=30))
                await _wait_for_blocked_client(admin, "victim")
                await asyncio.to_thread(server.restart)
                publisher = await connect()
                await publisher.publish("orders", "after the restart")
                delivery = await asyncio.wait_for(waiting, 40)
                assert delivery is not None and delivery.body == "after the restart"
                await delivery.ack()
        finally:
            await admin.aclose()


CHILD = r"""
import asyncio, sys, brokerkit.aio

async def main() -> None:
    broker = await brokerkit.aio.connect(sys.argv[1], visibility_timeout=float(sys.argv[3]))
    delivery = await (await broker.subscribe(sys.argv[2], prefetch=4)).receive(timeout=10)
    print(delivery.id, flush=True)
    await asyncio.Event().wait()  # "processing" until killed, renewing all along

asyncio.run(main())
"""


@run_async
async def test_a_sigkilled_async_consumers_messages_all_come_back(
    redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+list", prefix=prefix)
    visibility = 2.0
    async with Brokers(url, prefix) as connect:
        survivor = await connect(visibility_timeout=visibility)
        ids = await survivor.publish_many("orders", range(10))
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, url, "orders", str(visibility),
            stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            assert line.decode().strip() == ids[0]
            assert (await survivor.inspect("orders")).in_flight == 4
            child.kill()
            await child.wait()
            subscription = await survivor.subscribe("orders")
            got = {}
            while len(got) < len(ids):
                delivery = await subscription.receive(timeout=visibility + SLACK)
                assert delivery is not None, f"lost: {sorted(set(ids) - set(got))}"
                got[delivery.id] = delivery
                await delivery.ack()
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert [got[i].attempt for i in ids] == [2, 2, 2, 2, 1, 1, 1, 1, 1, 1]


@run_async
async def test_a_hundred_and_fifty_consumer_tasks_wait_on_one_broker(
    redis_server: RedisServer, prefix: str
) -> None:
    """Every consumer task blocked in BLMOVE holds a connection of the broker's pool:
    as on the sync side (a thread each), their number is not capped by the pool, so
    none of them fails with "Too many connections" however long the queue stays empty."""
    count = 150
    admin = _admin(redis_server)
    try:
        async with Brokers(redis_server.url("redis+list"), prefix) as connect:
            broker = await connect("?client_name=waiter", reconnect_timeout=1)
            subscriptions = [await broker.subscribe("orders") for _ in range(count)]
            waiting = [asyncio.ensure_future(s.receive(timeout=30)) for s in subscriptions]

            async def all_blocked() -> bool:
                failed = [w.exception() for w in waiting if w.done()]
                assert not failed, f"{len(failed)} consumer(s) failed: {failed[0]!r}"
                clients = await admin.client_list()
                blocked = [c for c in clients if c.get("name") == "waiter"]
                return sum(c.get("cmd") == "blmove" for c in blocked) == count

            await eventually(all_blocked, f"not all {count} consumers blocked in BLMOVE", 20)
            await asyncio.sleep(1.5)  # past reconnect_timeout: nobody gave up
            assert not any(w.done() for w in waiting)
            await broker.publish_many("orders", range(count))
            got = await asyncio.gather(*waiting)
            assert sorted(d.body for d in got if d is not None) == list(range(count))
            await broker.ack(*[d for d in got if d is not None])
    finally:
        await admin.aclose()


class LoopWatch:
    """Watches every step the event loop runs (each callback, each task step, timed
    by wrapping ``asyncio.Handle._run``): the longest in CPU time and in wall time,
    and the steps that slept in the kernel. A step that slept (a voluntary context
    switch) blocked the loop: a sync socket call, a sleep, a lock or a thread joined.
    Preemption by a busy machine is involuntary and is not counted against a step.
    Valid in a process with no other thread (waiting for the GIL is a sleep too).
    """

    def __init__(self) -> None:
        self.active = False
        self.steps = 0
        self.max_cpu = 0.0
        self.max_wall = 0.0
        self.slept: list[str] = []

    def install(self) -> None:
        run = asyncio.events.Handle._run
        usage = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)

        def watched(handle: asyncio.Handle) -> None:
            if not self.active:
                return run(handle)
            switches = resource.getrusage(usage).ru_nvcsw
            cpu, wall = time.thread_time(), time.perf_counter()
            run(handle)
            self.max_cpu = max(self.max_cpu, time.thread_time() - cpu)
            self.max_wall = max(self.max_wall, time.perf_counter() - wall)
            self.steps += 1
            if resource.getrusage(usage).ru_nvcsw != switches:
                self.slept.append(repr(handle)[:200])

        asyncio.events.Handle._run = watched  # type: ignore[method-assign]


async def _drain_with_a_ticker(url: str, prefix: str, watch: LoopWatch) -> dict[str, Any]:
    total, consumers, tick = 10_000, 50, 0.001
    async with Brokers(url, prefix) as connect:
        broker = await connect()
        for start in range(0, total, 1000):  # published before the watch starts
            await broker.publish_many("orders", range(start, start + 1000))
        lags: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            loop = asyncio.get_running_loop()
            while not done.is_set():
                before = loop.time()
                await asyncio.sleep(tick)
                lags.append(loop.time() - before - tick)

        seen: list[int] = []

        async def consumer() -> None:
            async for delivery in broker.consume("orders", prefetch=10, timeout=0.5):
                seen.append(delivery.body)
                await delivery.ack()

        threads = threading.active_count()
        watch.active = True
        ticking = asyncio.ensure_future(ticker())
        started = time.monotonic()
        await asyncio.gather(*(consumer() for _ in range(consumers)))
        seconds = time.monotonic() - started - 0.5  # the last consumers' idle timeout
        done.set()
        await ticking
        watch.active = False
        info = await broker.inspect("orders")
    return {
        "drained": sorted(seen) == list(range(total)),
        "left": [info.length, info.in_flight],
        "threads": threads,
        "seconds": seconds,
        "max_lag": max(lags),
        "p99_lag": statistics.quantiles(lags, n=100)[98],
        "median_lag": statistics.median(lags),
        "ticks": len(lags),
        "steps": watch.steps,
        "max_cpu": watch.max_cpu,
        "max_wall": watch.max_wall,
        "slept": watch.slept[:3],
        "slept_count": len(watch.slept),
    }


def drain_and_watch(url: str, prefix: str) -> dict[str, Any]:
    """Drain 10,000 messages with 50 consumer tasks under a :class:`LoopWatch` and a
    ticker; the figures (run in a process of its own, see the test below)."""
    watch = LoopWatch()
    watch.install()
    return asyncio.run(asyncio.wait_for(_drain_with_a_ticker(url, prefix, watch), 100))


WATCHED = r"""
import json, sys
from tests.test_redis_list_aio_faults import drain_and_watch
print(json.dumps(drain_and_watch(sys.argv[1], sys.argv[2])))
"""


def test_fifty_consumer_tasks_drain_ten_thousand_messages_without_blocking_the_loop(
    redis_target: RedisTarget, prefix: str
) -> None:
    """A ticker task asks for 1 ms sleeps while 50 consumer tasks (one broker) drain
    10,000 messages, acking each: how late it wakes is the loop's lag, reported. It
    runs in a fresh process, where the event loop's thread is the only thread. The
    assertions hold on a busy machine too: no step of the loop slept in the kernel,
    none ran longer than 100 ms of CPU, and the ticker never waited a fetch's full
    block (what a sync BLMOVE would cost)."""
    done = subprocess.run(
        [sys.executable, "-c", WATCHED, redis_target.url("redis+list"), prefix],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    print(
        f"\n50 tasks drained 10000 messages in {report['seconds']:.2f}s "
        f"({10_000 / report['seconds']:.0f} msg/s); ticker lag over {report['ticks']} "
        f"ticks: max {report['max_lag'] * 1000:.1f} ms, p99 {report['p99_lag'] * 1000:.1f} ms, "
        f"median {report['median_lag'] * 1000:.2f} ms; longest of {report['steps']} loop "
        f"steps: {report['max_cpu'] * 1000:.1f} ms CPU, {report['max_wall'] * 1000:.1f} ms wall"
    )
    assert report["drained"] and report["left"] == [0, 0]
    assert report["threads"] == 1, "the watch needs the loop's thread alone"
    slept = report["slept_count"]
    assert slept == 0, f"{slept} loop step(s) blocked: {report['slept']}"
    assert report["max_cpu"] < 0.1, f"one loop step computed {report['max_cpu'] * 1000:.0f} ms"
    assert report["max_lag"] < MAX_FETCH_WAIT, f"the loop stalled {report['max_lag']:.2f}s"
