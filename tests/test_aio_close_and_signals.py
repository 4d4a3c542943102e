"""brokerkit.aio's closing and signals: a close cancelled again and again strands
nothing, close() waits for a subscribe under way, the asyncio worker gives the program
its signal handlers back (and ``running()`` takes none), a sync broker bridged to an
asyncio backend and dropped unclosed ends its loop thread, and where a consume loop
left with ``break`` ends, sync and asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.aio import AsyncSubscription
from brokerkit.aio._threaded import threaded
from brokerkit.backends.memory import MemoryBroker
from brokerkit.backends.redis.stream import AsyncRedisStreamBroker
from brokerkit.exceptions import BrokerClosed
from tests.conftest import RedisTarget, registered
from tests.redis_server import RedisServer
from tests.redis_stream_aio_support import PROMPT, poll, receive_all, run

#: Seconds any wait of these tests may take at most: a hang guard, never a pace.
GUARD = 30.0


async def _until(check: Any, what: str, within: float = PROMPT, pause: float = 0.005) -> None:
    """Let the loop run until ``check()`` is true, failing after ``within`` seconds
    (looking again after each ``pause``; 0: at every turn of the loop)."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen in time"
        await asyncio.sleep(pause)


# -- a close cancelled again and again ------------------------------------------------


def test_a_consumer_cancelled_twice_while_it_closes_hands_back_its_prefetch_at_once(
    redis_target: RedisTarget, prefix: str
) -> None:
    """The second cancellation lands while the first one's close hands back the nine
    prefetched deliveries: they still come back at once, not after the visibility
    timeout (60 s), and a second close waits for that closing."""
    url = redis_target.url("redis+stream", prefix=prefix)

    async def main() -> None:
        async with brokerkit.aio.connect(url, visibility_timeout=60) as broker:
            await broker.publish_many("orders", list(range(10)))
            held: list[AsyncSubscription] = []

            async def consumer() -> None:
                consuming = broker.consume("orders", group="g", prefetch=10)
                async with contextlib.aclosing(consuming) as deliveries:
                    async for delivery in deliveries:
                        await delivery.ack()
                        held.append(delivery.subscription)
                        await asyncio.Event().wait()  # processing, until cancelled

            task = asyncio.create_task(consumer())
            await _until(lambda: bool(held), "the first delivery")
            subscription = held[0]
            await _until(lambda: subscription.buffered == 9, "the prefetch")
            task.cancel()
            # The close starts at the task's next step and waits for the server in
            # that very step: the second cancellation lands while it hands back.
            await _until(lambda: subscription.closed, "the close", pause=0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await subscription.close()  # waits for the closing under way
            assert subscription.buffered == 0
            other = await broker.subscribe("orders", group="g", prefetch=50)
            got = await receive_all(other, 9)
            assert sorted(d.body for d in got) == list(range(1, 10))
            await broker.ack(*got)
            await other.close()

    run(main())


def test_consumers_cancelled_by_an_anyio_cancel_scope_leave_their_group(
    redis_target: RedisTarget, prefix: str
) -> None:
    """A Starlette / FastAPI task group cancels its consumer with an anyio cancel
    scope, which cancels again at every await of the consumer's close: each closing
    still ends (the consumer leaves its group), and broker.close() waits for them.
    (A topic per consumer: the fetch a cancelled receive leaves running would take,
    and hand back, the next consumer's message of a shared one.)"""
    anyio = pytest.importorskip("anyio")
    url = redis_target.url("redis+stream", prefix=prefix)
    topics = [f"orders-{n}" for n in range(3)]

    async def main() -> None:
        async with brokerkit.aio.connect(url) as watcher:
            async with brokerkit.aio.connect(url) as broker:
                for topic in topics:
                    await broker.publish(topic, "x")
                    acked = asyncio.Event()

                    async def consume(topic: str = topic, ready: asyncio.Event = acked) -> None:
                        async for delivery in broker.consume(topic, group="g"):
                            await delivery.ack()
                            ready.set()

                    async with anyio.create_task_group() as group:
                        group.start_soon(consume)
                        await asyncio.wait_for(acked.wait(), GUARD)
                        group.cancel_scope.cancel()
            for topic in topics:
                info = await watcher.inspect(topic)
                assert [g.consumers for g in info.groups] == [()], topic

    run(main())


# -- close() while a subscribe is under way -------------------------------------------


class GatedMemory(MemoryBroker):
    """A sync-only backend (so, under brokerkit.aio, the thread adapter) whose
    subscribe waits for the test's word, as a server round trip takes its time."""

    entered: ClassVar[threading.Event]
    go_on: ClassVar[threading.Event]

    def _subscribe(self, subscription: Any) -> None:
        type(self).entered.set()
        assert type(self).go_on.wait(GUARD)
        super()._subscribe(subscription)


class GatedStream(AsyncRedisStreamBroker):
    """redis+stream whose subscribe, done on the server, waits for the test's word."""

    entered: ClassVar[asyncio.Event]
    go_on: ClassVar[asyncio.Event]

    async def _subscribe(self, subscription: AsyncSubscription) -> None:
        await super()._subscribe(subscription)
        type(self).entered.set()
        await type(self).go_on.wait()


async def _close_meanwhile(broker: brokerkit.aio.AsyncBroker) -> asyncio.Task[None]:
    """Start broker.close() while a subscribe waits at its gate. It may return at once
    (it could before the fix, the subscribe then reaching a closed backend); now it
    waits for the subscribe. The bounded wait only gives it the time to return if it
    does: the test's outcome holds either way."""
    closing = asyncio.create_task(broker.close())
    await _until(lambda: broker.closed, "the close")
    await asyncio.wait({closing}, timeout=1.0)
    return closing


def test_a_subscribe_under_way_when_the_thread_adapter_closes_raises_broker_closed() -> None:
    GatedMemory.entered, GatedMemory.go_on = threading.Event(), threading.Event()

    async def main() -> None:
        url = brokerkit.BrokerURL.parse(f"memory://gated-{uuid.uuid4().hex}")
        broker = await threaded(GatedMemory).open(url)
        subscribing = asyncio.create_task(broker.subscribe("t"))
        assert await asyncio.to_thread(GatedMemory.entered.wait, GUARD)
        closing = await _close_meanwhile(broker)
        GatedMemory.go_on.set()
        with pytest.raises(BrokerClosed, match="is closed"):
            await subscribing
        await asyncio.wait_for(closing, GUARD)
        assert broker.closed and broker.sync.closed

    run(main())


def test_a_subscribe_under_way_when_redis_stream_closes_leaves_no_connection_open(
    redis_server: RedisServer,
) -> None:
    admin = redis_server.client()

    def connections() -> int:
        return sum(1 for c in admin.client_list() if c["cmd"] != "client|list")

    async def main() -> None:
        GatedStream.entered, GatedStream.go_on = asyncio.Event(), asyncio.Event()
        broker = GatedStream.from_url(redis_server.url("redis+stream"), prefix="gated")
        await broker.publish("orders", 1)
        subscribing = asyncio.create_task(broker.subscribe("orders", group="g"))
        await asyncio.wait_for(GatedStream.entered.wait(), GUARD)
        closing = await _close_meanwhile(broker)
        GatedStream.go_on.set()
        with pytest.raises(BrokerClosed):
            await subscribing
        await asyncio.wait_for(closing, GUARD)
        await poll(lambda: connections() == 0)
        info = admin.xinfo_groups("gated:{orders}")
        assert [g["consumers"] for g in info] == [0]  # the subscriber left its group

    try:
        run(main())
    finally:
        admin.close()


# -- the asyncio worker and the program's signals -------------------------------------


@pytest.fixture
def program_handlers() -> Iterator[None]:
    """Whatever a test does to SIGINT and SIGTERM is undone afterwards."""
    saved = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def _worker(broker: brokerkit.aio.AsyncBroker) -> brokerkit.aio.Worker:
    worker = brokerkit.aio.Worker(broker, grace=1)

    @worker.handler("signals")
    async def handle(body: Any) -> None:
        pass

    return worker


async def _run_until_ready_then_stop(worker: brokerkit.aio.Worker) -> None:
    running = asyncio.create_task(worker.run())
    assert await worker.wait_ready(GUARD)
    worker.stop()
    await asyncio.wait_for(running, GUARD)


@pytest.mark.usefixtures("program_handlers")
def test_worker_run_gives_the_programs_signal_handlers_back() -> None:
    def mine(number: int, frame: Any) -> None:
        pass

    signal.signal(signal.SIGTERM, mine)
    before_int = signal.getsignal(signal.SIGINT)

    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            await _run_until_ready_then_stop(_worker(broker))

    asyncio.run(main())
    assert signal.getsignal(signal.SIGTERM) is mine
    assert signal.getsignal(signal.SIGINT) is before_int


@pytest.mark.usefixtures("program_handlers")
def test_worker_run_gives_the_loops_own_signal_handler_back() -> None:
    """An asyncio service that handles SIGTERM on its loop has it handled there again
    once the worker's run has returned."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, got.set)
        try:
            async with brokerkit.aio.connect("memory://") as broker:
                await _run_until_ready_then_stop(_worker(broker))
            # Checked before sending: the default handling would end the test process.
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(got.wait(), GUARD)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    asyncio.run(main())


@pytest.mark.usefixtures("program_handlers")
def test_worker_running_leaves_the_programs_signals_to_the_program() -> None:
    """As the sync worker's running() (a thread, which cannot take signals): a SIGTERM
    while the block runs is the program's, and the worker runs on."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, got.set)
        try:
            async with brokerkit.aio.connect("memory://") as broker:
                worker = _worker(broker)
                async with worker.running():
                    os.kill(os.getpid(), signal.SIGTERM)
                    await asyncio.wait_for(got.wait(), GUARD)
                    assert worker.stopped_by is None
                    got.clear()
                assert worker.stopped_by is None and worker.drained
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
            os.kill(os.getpid(), signal.SIGTERM)  # still the program's after the block
            await asyncio.wait_for(got.wait(), GUARD)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    asyncio.run(main())


# -- a bridged sync broker dropped unclosed -------------------------------------------


def test_a_sync_nats_broker_dropped_unclosed_closes_and_ends_its_loop_thread(
    nats_url: str, nats_prefix: str
) -> None:
    broker = brokerkit.connect(nats_url, prefix=nats_prefix)
    broker.publish("dropped", "x")  # connected
    thread, inner = broker._loop._thread, broker.inner
    assert thread.is_alive() and not inner.closed
    del broker
    gc.collect()
    deadline = time.monotonic() + GUARD
    while thread.is_alive() or not inner.closed:
        assert time.monotonic() < deadline, "the loop thread outlived its broker"
        thread.join(0.05)


# -- where a consume loop left with break ends ----------------------------------------


class Outcomes:
    """A plugin that writes down how each delivery's hooks ended."""

    def __init__(self) -> None:
        self.ended: list[str] = []

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str, scope: dict[str, Any]) -> None:
        self.ended.append(outcome)


@pytest.fixture
def outcomes() -> Iterator[Outcomes]:
    yield from registered(Outcomes())


def test_a_consume_loop_left_with_break_ends_where_its_generator_is_closed(
    outcomes: Outcomes,
) -> None:
    """The sync loop ends at the break (its generator is closed as it is dropped); the
    asyncio one where contextlib.aclosing closes it, as docs/asyncio.md shows."""
    with brokerkit.connect(f"memory://break-{uuid.uuid4().hex}") as broker:
        broker.publish("t", 1)
        for delivery in broker.consume("t", timeout=1):
            held = delivery
            break
        held.ack()
    assert outcomes.ended == ["unsettled"]

    async def main(ack_inside: bool) -> None:
        async with brokerkit.aio.connect(f"memory://break-{uuid.uuid4().hex}") as broker:
            await broker.publish("t", 1)
            async with contextlib.aclosing(broker.consume("t", timeout=1)) as deliveries:
                async for delivery in deliveries:
                    held = delivery
                    break
                if ack_inside:
                    await held.ack()
            if not ack_inside:
                await held.ack()

    outcomes.ended.clear()
    asyncio.run(main(ack_inside=False))
    assert outcomes.ended == ["unsettled"]
    outcomes.ended.clear()
    asyncio.run(main(ack_inside=True))
    assert outcomes.ended == ["ack"]
