"""redis+list over the asyncio API (``brokerkit.aio``), against a real redis-server.

The backend is native on ``redis.asyncio``: these tests check that its asyncio class
keeps the backend's promises (receipts, rescue, leases, raw elements, errors), that
cancellation and close strand nothing, and that it never blocks the event loop. The
faults (CLIENT KILL, a restarted server) are in ``test_redis_list_aio_faults.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.list import AsyncRedisListBroker
from brokerkit.exceptions import IncompatibleTopic, StaleDelivery
from tests.conftest import RedisTarget

_T = TypeVar("_T")

#: No test here may take longer than this (a hang fails instead of blocking the run).
TEST_TIMEOUT = 120.0


def run_async(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., None]:
    """Run an ``async def`` test on a fresh event loop (``asyncio.run``), with a deadline;
    pytest still sees the test's own parameters, so fixtures work as usual."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), TEST_TIMEOUT))

    return wrapper


class Brokers:
    """``await brokers(query, **options)``: a new native async redis+list broker under
    one prefix (``query``, such as ``"?client_name=x"``, is added to the URL); every
    broker it made is closed when the ``async with`` block ends."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.made: list[AsyncRedisListBroker] = []

    async def __call__(self, query: str = "", **options: Any) -> AsyncRedisListBroker:
        options.setdefault("prefix", self.prefix)
        broker = await brokerkit.aio.connect(self.url + query, **options)
        assert isinstance(broker, AsyncRedisListBroker)  # native, not the thread adapter
        self.made.append(broker)
        return broker

    async def __aenter__(self) -> Brokers:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for broker in self.made:
            await broker.close()


@contextlib.asynccontextmanager
async def brokers_and_client(
    target: RedisTarget, prefix: str
) -> AsyncIterator[tuple[Brokers, aioredis.Redis]]:
    """Brokers under ``prefix`` and a plain ``redis.asyncio`` client, for assertions."""
    client = aioredis.Redis(host=target.host, port=target.port, db=target.db)
    try:
        async with Brokers(target.url("redis+list"), prefix) as brokers:
            yield brokers, client
    finally:
        await client.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 10) -> None:
    """Poll ``check`` (with a deadline) until it holds."""
    deadline = time.monotonic() + limit
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def server_ms(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def keys_under(client: aioredis.Redis, prefix: str) -> set[bytes]:
    return {key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)}


def _threads() -> set[threading.Thread]:
    """The threads of the process, but asyncio's resolver pool (a URL naming a host
    by name is resolved there once per connection, as asyncio always does)."""
    return {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}


async def lease_tasks() -> list[asyncio.Task[Any]]:
    """The lease keepers' renewal tasks running on this loop."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("brokerkit-leases")]


# -- the backend's promises, over the asyncio API ---------------------------------


@run_async
async def test_publish_many_and_consume_in_order_without_a_thread(
    redis_target: RedisTarget, prefix: str
) -> None:
    threads = _threads()
    async with brokers_and_client(redis_target, prefix) as (connect, client):
        broker = await connect(visibility_timeout=1.5)
        ids = await broker.publish_many("orders", range(2500))
        assert await client.llen(f"{prefix}:{{orders}}") == 2500
        got = [d async for d in broker.consume("orders", prefetch=100, limit=2500, timeout=5)]
        assert [d.id for d in got] == ids and [d.body for d in got] == list(range(2500))
        # Held past a renewal (every 0.5 s): renewed by a task, not a thread.
        await asyncio.sleep(0.7)
        assert await lease_tasks()
        await broker.ack(*got)
        info = await broker.inspect("orders")
        assert (info.length, info.in_flight) == (0, 0)
        assert _threads() == threads  # no thread hop anywhere
        await broker.close()
        assert await lease_tasks() == []  # close() ended the renewals


@run_async
async def test_a_late_ack_is_stale_and_leaves_the_new_holder_alone(
    redis_target: RedisTarget, prefix: str
) -> None:
    async with brokers_and_client(redis_target, prefix) as (connect, _):
        slow, fast = await connect(), await connect()
        await slow.publish("orders", "work")
        mine = await (await slow.subscribe("orders")).receive(timeout=5)
        assert mine is not None
        await mine.extend(seconds=0.05)
        theirs = await (await fast.subscribe("orders")).receive(timeout=5)
        assert theirs is not None and (theirs.id, theirs.attempt) == (mine.id, 2)
        with pytest.raises(StaleDelivery):
            await mine.ack()
        assert (await fast.inspect("orders")).in_flight == 1
        await theirs.ack()
        assert (await fast.inspect("orders")).in_flight == 0


@run_async
async def test_a_woken_delivery_goes_out_before_its_lease_reply_and_settles(
    redis_target: RedisTarget, prefix: str
) -> None:
    """The asyncio side of tests/test_redis_list_wakeup.py: the delivery a BLMOVE woke
    for is handed out before the lease call's reply is read; that call failed
    (NOSCRIPT), and the ack runs it again first."""
    async with brokers_and_client(redis_target, prefix) as (connect, client):
        producer, consumer = await connect(), await connect("?client_name=woken-aio")
        subscription = await consumer.subscribe("orders")
        assert await subscription.receive(timeout=0) is None
        waiting = asyncio.ensure_future(subscription.receive(timeout=5))

        async def blocked() -> bool:
            clients = await client.client_list()
            return any(c.get("name") == "woken-aio" and c.get("cmd") == "blmove" for c in clients)

        await eventually(blocked, "the consumer never blocked in BLMOVE")
        await client.script_flush()
        await producer.publish("orders", "hello")
        delivery = await waiting
        assert delivery is not None and delivery.body == "hello" and delivery.attempt == 1
        assert subscription.state.pending is not None
        await delivery.ack()
        assert subscription.state.pending is None
        info = await consumer.inspect("orders")
        assert (info.length, info.in_flight) == (0, 0)
        assert all([await client.llen(key) == 0 for key in info.details["processing_keys"]])


@run_async
async def test_a_receive_after_a_cancelled_one_waits_for_its_fetch(
    redis_target: RedisTarget, prefix: str
) -> None:
    """A receive cancelled while it waits in BLMOVE leaves its fetch running. The next
    receive's fetch waits for it (a consumer fetches one at a time: a woken fetch's
    lease call leases the tail of the processing list, where a second BLMOVE could move
    another element): never two of its BLMOVEs at once. Two messages come: each is
    delivered once, the live ack is never stale, and nothing is left held."""
    async with brokers_and_client(redis_target, prefix) as (connect, client):
        producer, consumer = await connect(), await connect("?client_name=orphaned")
        subscription = await consumer.subscribe("orders")
        assert await subscription.receive(timeout=0) is None

        async def blocked() -> int:
            clients = await client.client_list()
            return sum(
                1 for c in clients if c.get("name") == "orphaned" and c.get("cmd") == "blmove"
            )

        async def one_blocked() -> bool:
            return await blocked() == 1

        first = asyncio.ensure_future(subscription.receive(timeout=None))
        await eventually(one_blocked, "the first receive never blocked")
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        second = asyncio.ensure_future(subscription.receive(timeout=5))
        quiet_until = time.monotonic() + 0.3  # the second fetch would block by then
        while time.monotonic() < quiet_until:
            assert await blocked() <= 1, "two fetches of one consumer waited at once"
            await asyncio.sleep(0.02)
        await producer.publish_many("orders", ["X", "Y"])
        live = await second
        assert live is not None
        await live.ack()  # its own lease: never stale
        rest = await _receive_all(subscription, 1, timeout=5)
        assert sorted([live.body, *(d.body for d in rest)]) == ["X", "Y"]
        await consumer.ack(*rest)
        info = await consumer.inspect("orders")
        assert (info.length, info.in_flight) == (0, 0)
        assert all([await client.llen(key) == 0 for key in info.details["processing_keys"]])
        await subscription.close()
        assert subscription.state.pending is None
        held = subscription.state.reader._state
        assert held.connection is None and not held.reading  # given back to the pool
        # every reply read: of the pool's connections, only the broker's settling one
        # is still taken
        assert len(consumer._client.connection_pool._in_use_connections) == 1


@run_async
async def test_four_concurrent_rescuers_requeue_each_stuck_delivery_once(
    redis_target: RedisTarget, prefix: str
) -> None:
    async with brokers_and_client(redis_target, prefix) as (connect, client):
        crashed = await connect(visibility_timeout=0.3)
        ids = set(await crashed.publish_many("orders", range(40)))
        subscription = await crashed.subscribe("orders", prefetch=40)
        held = [await subscription.receive(timeout=5) for _ in range(40)]
        assert all(held)
        details = (await crashed.inspect("orders")).details
        await crashed._keeper.stop()  # a hung process: nothing settled, nothing renewed
        deadlines = [int(v.split(b".")[0]) for v in await client.hvals(details["expiry_key"])]

        async def past_deadlines() -> bool:
            return await server_ms(client) > max(deadlines)

        await eventually(past_deadlines, "the server's clock never passed the deadlines")
        rescuers = [await connect() for _ in range(4)]
        counts = await asyncio.gather(*(r.rescue("orders") for r in rescuers))
        assert sorted(counts)[-1] == 40 and sum(counts) == 40
        again = [d async for d in rescuers[0].consume("orders", prefetch=40, limit=40, timeout=5)]
        assert {d.id for d in again} == ids and {d.attempt for d in again} == {2}
        await rescuers[0].ack(*again)


@run_async
async def test_a_dead_consumers_list_is_handed_back(redis_target: RedisTarget, prefix: str) -> None:
    async with brokers_and_client(redis_target, prefix) as (connect, client):
        broker = await connect()
        keys = (await broker.inspect("orders")).details
        await broker.publish("orders", "orphaned")
        await client.lmove(keys["queue_key"], f"{keys['queue_key']}:processing:ghost")
        await client.zadd(keys["consumers_key"], {"ghost": await server_ms(client) - 1000})
        assert await broker.rescue("orders") == 1
        delivery = await (await broker.subscribe("orders")).receive(timeout=5)
        assert delivery is not None and delivery.attempt == 1
        await delivery.ack()


@run_async
async def test_a_raw_element_is_consumed_and_dead_lettered(
    redis_target: RedisTarget, prefix: str
) -> None:
    async with brokers_and_client(redis_target, prefix) as (connect, client):
        broker = await connect(queue_key=f"{prefix}:queue:*")
        await client.lpush(f"{prefix}:queue:orders", b'{"orderId": 123}')
        delivery = await (await broker.subscribe("orders")).receive(timeout=5)
        assert delivery is not None and delivery.body == {"orderId": 123}
        await delivery.nack(requeue=False)
        dead_topic = broker.dead_letter_topic("orders")
        dead = await (await broker.subscribe(dead_topic)).receive(timeout=5)
        assert dead is not None and dead.body == {"orderId": 123}
        assert dead.headers["x-dead-letter-reason"] == "rejected"
        await dead.ack()


@pytest.mark.parametrize(
    "element",
    [
        b'BK1{"id":"x","ts":1' + b"0" * 400 + b"}\nbody",  # too large for a float
        b'BK1{"id":"x","ts":1e999}\nbody',
        b'BK1{"id":"x","ts":"-1e999"}\nbody',
    ],
    ids=["400 digits", "1e999", "as text"],
)
@run_async
async def test_an_element_whose_time_is_no_finite_number_is_dead_lettered(
    redis_target: RedisTarget, prefix: str, element: bytes
) -> None:
    """The scripts read such a header as no envelope (the element is raw), as Python's
    decoding does: a dead letter must re-encode it, and JSON has no infinity."""
    async with brokers_and_client(redis_target, prefix) as (connect, client):
        broker = await connect()
        await client.lpush((await broker.inspect("orders")).details["queue_key"], element)
        good = await broker.publish("orders", "good")
        subscription = await broker.subscribe("orders")
        poison = await subscription.receive(timeout=5)
        assert poison is not None and poison.payload in (element, b"body")
        await poison.nack(requeue=False)  # dead-lettered, not an error
        behind = await subscription.receive(timeout=5)
        assert behind is not None and (behind.id, behind.body) == (good, "good")
        await behind.ack()
        dead_topic = broker.dead_letter_topic("orders")
        dead = await (await broker.subscribe(dead_topic)).receive(timeout=5)
        assert dead is not None and dead.payload == element
        assert dead.headers["x-dead-letter-reason"] == "rejected"
        await dead.ack()
        info = await broker.inspect("orders")
        assert (info.length, info.in_flight, info.dead_lettered) == (0, 0, 0)


@run_async
async def test_a_topic_key_holding_a_hash_is_a_clear_error(
    redis_target: RedisTarget, prefix: str
) -> None:
    async with brokers_and_client(redis_target, prefix) as (connect, client):
        broker = await connect()
        await client.hset(f"{prefix}:{{orders}}", "field", "value")
        with pytest.raises(IncompatibleTopic, match="holds a hash, not a list"):
            await broker.publish("orders", "x")
        with pytest.raises(IncompatibleTopic, match="holds a hash"):
            await (await broker.subscribe("orders")).receive(timeout=0.1)
        assert await client.hgetall(f"{prefix}:{{orders}}") == {b"field": b"value"}


@run_async
async def test_shortening_one_lease_of_a_batch_leaves_the_others_leased(
    redis_target: RedisTarget, prefix: str
) -> None:
    async with brokers_and_client(redis_target, prefix) as (connect, _):
        broker = await connect()
        await broker.publish_many("orders", ["a", "b", "c"])
        subscription = await broker.subscribe("orders", prefetch=3)
        a, b, c = [await subscription.receive(timeout=5) for _ in range(3)]
        assert a is not None and b is not None and c is not None
        await b.extend(seconds=0.05)

        async def rescued() -> bool:
            return await broker.rescue("orders") == 1

        await eventually(rescued, "the shortened lease never ran out")
        with pytest.raises(StaleDelivery):
            await b.ack()
        await broker.ack(a, c)  # still theirs
        again = await subscription.receive(timeout=5)
        assert again is not None and (again.body, again.attempt) == ("b", 2)
        await again.ack()


@run_async
async def test_the_renewal_task_keeps_a_slow_handlers_lease(
    redis_target: RedisTarget, prefix: str
) -> None:
    """A handler three visibility timeouts long is never redelivered while its broker
    lives: the renewals run as a task beside it (and beside a busy consumer)."""
    async with brokers_and_client(redis_target, prefix) as (connect, _):
        slow, other = await connect(visibility_timeout=1), await connect()
        await slow.publish("orders", "long job")
        held = await (await slow.subscribe("orders")).receive(timeout=5)
        assert held is not None
        watcher = await other.subscribe("orders")
        assert await watcher.receive(timeout=3.0) is None  # it rescues as it polls
        assert await other.rescue("orders") == 0
        await held.ack()  # not stale


@run_async
async def test_a_renewal_racing_an_ack_reports_no_lost_lease(
    redis_target: RedisTarget, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with brokers_and_client(redis_target, prefix) as (connect, _):
        broker = await connect()
        await broker.publish_many("orders", ["a", "b"])
        subscription = await broker.subscribe("orders", prefetch=2)
        acked, kept = await subscription.receive(timeout=5), await subscription.receive(timeout=5)
        assert acked is not None and kept is not None
        # The keeper's beat looks at what it holds, then an ack settles one of them
        # before the beat's renewal reaches the server.
        beat = broker._keeper.held()
        assert {id(d) for d in beat} == {id(acked), id(kept)}
        await acked.ack()
        with caplog.at_level("WARNING", logger="brokerkit.redis"):
            await broker._renew(beat)
        assert [r.getMessage() for r in caplog.records] == []
        await kept.ack()
        assert (await broker.inspect("orders")).in_flight == 0


@run_async
async def test_sync_and_async_brokers_share_one_queue(
    redis_target: RedisTarget, prefix: str
) -> None:
    """The two sides are one backend: the same keys, scripts, receipts and attempts."""
    async with brokers_and_client(redis_target, prefix) as (connect, _):
        broker = await connect()
        with brokerkit.connect(redis_target.url("redis+list"), prefix=prefix) as sync:
            ids = sync.publish_many("orders", ["a", "b"])
            first = await (await broker.subscribe("orders")).receive(timeout=5)
            assert first is not None and (first.id, first.attempt) == (ids[0], 1)
            await first.nack()
            again = sync.subscribe("orders", prefetch=2)
            got = [again.receive(timeout=5) for _ in range(2)]
            assert [(d.id, d.attempt) for d in got if d] == [
                (ids[0], 2),
                (ids[1], 1),
            ]  # back at the head
            sync.ack(*[d for d in got if d])
            assert (await broker.inspect("orders")).in_flight == 0


# -- cancellation and close strand nothing ------------------------------------------

#: Long enough that a delivery seen again within a few seconds was handed back, not
#: rescued after its lease ran out.
LONG_VT = 60


async def _receive_all(
    subscription: brokerkit.aio.AsyncSubscription, count: int, timeout: float
) -> list[brokerkit.aio.AsyncDelivery]:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        delivery = await subscription.receive(timeout=max(deadline - time.monotonic(), 0))
        assert delivery is not None, f"only {len(got)} of {count} came back in {timeout}s"
        got.append(delivery)
    return got


@run_async
async def test_a_consumer_task_cancelled_mid_batch_hands_its_prefetch_back_at_once(
    redis_target: RedisTarget, prefix: str
) -> None:
    async with brokers_and_client(redis_target, prefix) as (connect, _):
        # max_deliveries=1: a hand-back that counted an attempt would dead-letter them
        broker = await connect(visibility_timeout=LONG_VT, max_deliveries=1)
        other = await connect(max_deliveries=1)
        ids = await broker.publish_many("orders", range(10))
        in_hand: list[brokerkit.aio.AsyncDelivery] = []
        hung = asyncio.Event()

        async def consumer() -> None:
            async for delivery in broker.consume("orders", prefetch=10):
                in_hand.append(delivery)
                hung.set()
                await asyncio.Event().wait()  # a handler that never ends

        task = asyncio.ensure_future(consumer())
        await asyncio.wait_for(hung.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        started = time.monotonic()
        back = await _receive_all(await other.subscribe("orders", prefetch=10), 9, timeout=5)
        assert [d.id for d in back] == ids[1:]
        assert [d.attempt for d in back] == [1] * 9, "nobody saw them: no attempt counted"
        print(f"\n9 prefetched deliveries back {time.monotonic() - started:.3f}s after cancel")
        # The one in hand is the caller's to settle, and still can be.
        (delivery,) = in_hand
        await delivery.nack()
        await other.ack(*back)


@run_async
async def test_a_receive_cancelled_during_its_fetch_strands_nothing(
    redis_target: RedisTarget, prefix: str
) -> None:
    async with brokers_and_client(redis_target, prefix) as (connect, _):
        broker = await connect(visibility_timeout=LONG_VT, max_deliveries=1)
        other = await connect(max_deliveries=1)
        ids = await broker.publish_many("orders", range(10))
        subscription = await broker.subscribe("orders", prefetch=10)
        task = asyncio.ensure_future(subscription.receive(timeout=5))
        await asyncio.sleep(0)  # the receive starts its fetch and awaits the server
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        back = await _receive_all(await other.subscribe("orders", prefetch=10), 10, timeout=5)
        assert sorted(d.id for d in back) == sorted(ids)
        assert [d.attempt for d in back] == [1] * 10, "nobody saw them: no attempt counted"
        await other.ack(*back)
        assert (await other.inspect("orders")).in_flight == 0


@run_async
async def test_a_receive_cancelled_while_woken_hands_back_what_its_wake_up_leased(
    redis_target: RedisTarget, prefix: str
) -> None:
    """The woken fetch hands its first element out and leases the rest behind it for
    the next receive: a cancelled receive's hand-back takes those too, while the
    subscription stays open."""
    async with brokers_and_client(redis_target, prefix) as (connect, client):
        broker = await connect("?client_name=woken", visibility_timeout=LONG_VT)
        other = await connect()
        subscription = await broker.subscribe("orders", prefetch=5)
        assert await subscription.receive(timeout=0) is None  # idle: the next one blocks

        async def blocked() -> bool:
            clients = await client.client_list()
            return any(c.get("name") == "woken" and c.get("cmd") == "blmove" for c in clients)

        task = asyncio.ensure_future(subscription.receive(timeout=None))
        await eventually(blocked, "the receive never blocked in BLMOVE")
        # Cancelled first: its BLMOVE runs on (shielded) and is woken by the publish. A
        # cancel after the publish could come too late, the receive already returned.
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ids = await other.publish_many("orders", range(3))
        back = await _receive_all(await other.subscribe("orders", prefetch=5), 3, timeout=5)
        assert sorted(d.id for d in back) == sorted(ids), "a leased one was kept"
        assert [d.attempt for d in back] == [1, 1, 1]
        await other.ack(*back)
        assert not subscription.closed
        await subscription.close()


@run_async
async def test_leaving_async_for_early_strands_nothing(
    redis_target: RedisTarget, prefix: str
) -> None:
    async with brokers_and_client(redis_target, prefix) as (connect, _):
        broker = await connect(visibility_timeout=LONG_VT)
        await broker.publish_many("orders", range(20))
        # With aclosing (the documented way), the prefetch is back when the block ends.
        async with contextlib.aclosing(broker.consume("orders", prefetch=10)) as deliveries:
            async for delivery in deliveries:
                await delivery.ack()
                break
        info = await broker.inspect("orders")
        assert (info.length, info.in_flight) == (19, 0)
        # A bare break: the generator is finalized by the loop, soon after.
        async for delivery in broker.consume("orders", prefetch=10):
            await delivery.ack()
            break

        async def handed_back() -> bool:
            info = await broker.inspect("orders")
            return (info.length, info.in_flight) == (18, 0)

        await eventually(handed_back, "the prefetch of a loop left by break never came back", 5)


@run_async
async def test_close_during_a_receive_ends_it_cleanly(
    redis_target: RedisTarget, prefix: str
) -> None:
    async with brokers_and_client(redis_target, prefix) as (connect, client):
        broker, other = await connect(visibility_timeout=LONG_VT), await connect()
        # One consumer blocked on an empty queue, one hung in a handler with 4 buffered.
        ended: list[str] = []

        async def idle_consumer() -> None:
            async for _ in broker.consume("empty"):
                pass
            ended.append("idle")

        idle = asyncio.ensure_future(idle_consumer())
        await broker.publish_many("orders", range(5))
        busy_sub = await broker.subscribe("orders", prefetch=5)
        in_hand = await busy_sub.receive(timeout=5)
        assert in_hand is not None and busy_sub.buffered == 4

        async def blocked() -> bool:
            clients = await client.client_list()
            return any(c.get("cmd") == "blmove" for c in clients)

        await eventually(blocked, "the idle consumer never blocked in BLMOVE")
        started = time.monotonic()
        await broker.close()
        closing = time.monotonic() - started
        await asyncio.wait_for(idle, 5)  # ended, without an error
        assert ended == ["idle"]
        assert await lease_tasks() == []
        with pytest.raises(brokerkit.BrokerClosed):
            await busy_sub.receive(timeout=0)
        back = await _receive_all(await other.subscribe("orders", prefetch=5), 4, timeout=5)
        assert [d.body for d in back] == [1, 2, 3, 4]
        await other.ack(*back)
        print(f"\nclose() with a receive blocked in BLMOVE took {closing:.3f}s")
