"""A receive cut off by a timeout, and closing: the leftover fetch of a cancelled receive
keeps ORDERED and leases no more than one fetch; a broker shared by threads that each
run a loop closes; a closed pattern subscription leaves no group behind, and its private
group is never an application's group; a close wakes the waiting fetches (the memory
backend's); ``acquire(lock, 0)`` never waits; ``consume(limit=...)`` is checked."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit._acompat import Lock, acquire
from brokerkit.aio import AsyncBroker, AsyncSubscription
from brokerkit.exceptions import InvalidOption
from tests.redis_stream_aio_support import run
from tests.waiting import wait_until

#: Seconds any wait of these tests may take at most: a hang guard, never a pace.
GUARD = 30.0


async def _until(check: Callable[[], bool], what: str, within: float = GUARD) -> None:
    """Let the loop run until ``check()`` is true, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen in time"
        await asyncio.sleep(0.001)


def _name() -> str:
    return f"memory://fetch-order-{uuid.uuid4().hex}"


async def _time_out_a_receive(subscription: AsyncSubscription) -> None:
    """A receive cut off by a timeout while its fetch waits: the fetch runs on."""
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(subscription.receive(), 0.05)


# -- 1. a receive cut off by a timeout keeps ORDERED -------------------------------------


def test_the_receive_after_a_timed_out_one_gets_the_messages_in_publish_order() -> None:
    """The timed-out receive's fetch still waits when 1 and 2 are published: it takes 1
    and hands it back; the next receives must see 1 then 2, each a first attempt."""

    async def main() -> list[tuple[Any, int]]:
        async with brokerkit.aio.connect("memory://") as broker:
            subscription = await broker.subscribe("jobs")
            await _time_out_a_receive(subscription)
            await broker.publish("jobs", 1)
            await broker.publish("jobs", 2)
            got = []
            for _ in range(2):
                delivery = await subscription.receive(timeout=GUARD)
                assert delivery is not None
                got.append((delivery.body, delivery.attempt))
                await delivery.ack()
            await subscription.close()
            return got

    assert run(main()) == [(1, 1), (2, 1)]


def test_a_consumer_polling_with_a_timeout_sees_every_message_in_order_once() -> None:
    """A consumer that polls with a timeout while messages trickle in."""

    async def main() -> list[tuple[Any, int]]:
        async with brokerkit.aio.connect("memory://") as broker:
            subscription = await broker.subscribe("jobs")
            received: list[tuple[Any, int]] = []

            async def consumer() -> None:
                while len(received) < 20:
                    try:
                        delivery = await asyncio.wait_for(subscription.receive(), 0.02)
                    except asyncio.TimeoutError:
                        continue
                    assert delivery is not None
                    received.append((delivery.body, delivery.attempt))
                    await delivery.ack()

            async def producer() -> None:
                for i in range(20):
                    await broker.publish("jobs", i)
                    # now and then, long enough for the consumer's poll to time out
                    await asyncio.sleep(0.03 if i % 2 else 0)

            await asyncio.wait_for(asyncio.gather(consumer(), producer()), GUARD)
            await subscription.close()
            return received

    assert run(main()) == [(i, 1) for i in range(20)]


def test_a_receive_waiting_for_a_leftover_fetch_keeps_to_its_own_timeout() -> None:
    """The leftover fetch waits up to a second; a receive of 0 seconds does not wait
    for it to end."""

    async def main() -> tuple[Any, bool]:
        async with brokerkit.aio.connect("memory://") as broker:
            subscription = await broker.subscribe("jobs")
            await _time_out_a_receive(subscription)
            got = await subscription.receive(timeout=0)
            leftover_running = bool(subscription._orphans)
            await subscription.close()
            return got, leftover_running

    assert run(main()) == (None, True)


# -- 2. a broker shared between threads, each with its own loop -------------------------


def test_a_broker_shared_between_threads_closes_a_receive_waiting_on_another_loop() -> None:
    """A consumer thread runs its own loop and waits in a receive; another thread's
    loop closes the broker: the receive ends with the close, which returns."""
    name = _name()
    watcher = brokerkit.connect(name)  # keeps the store, to look at it after the close
    broker: AsyncBroker = asyncio.run(_connect(name))
    subscribed: list[AsyncSubscription] = []
    acked: list[Any] = []
    outcome: list[str] = []

    def consumer_thread() -> None:
        async def consume() -> None:
            subscription = await broker.subscribe("t", prefetch=5)
            subscribed.append(subscription)
            try:
                async for delivery in subscription:
                    await delivery.ack()
                    acked.append(delivery.body)
                outcome.append("ended")
            except Exception as exc:
                outcome.append(repr(exc))

        asyncio.run(consume())

    thread = threading.Thread(target=consumer_thread, daemon=True)
    watcher.publish_many("t", [1, 2, 3])
    thread.start()
    wait_until(lambda: len(acked) == 3, "the deliveries", within=GUARD)
    wait_until(lambda: subscribed[0]._fetching.locked(), "the next fetch", within=GUARD)

    async def close() -> None:
        await asyncio.wait_for(broker.close(), GUARD)

    try:
        asyncio.run(close())
        thread.join(GUARD)
        assert not thread.is_alive()
        assert outcome == ["ended"]
        assert watcher.inspect("t").in_flight == 0
    finally:
        watcher.close()


def test_a_broker_shared_between_threads_hands_back_on_the_subscriptions_loop() -> None:
    """The consumer thread's subscription holds two prefetched deliveries when another
    thread's loop closes the broker: they are handed back, and the consumer's next
    receive says the subscription is closed."""
    name = _name()
    watcher = brokerkit.connect(name)
    broker: AsyncBroker = asyncio.run(_connect(name))
    received = threading.Event()
    outcome: list[str] = []

    def consumer_thread() -> None:
        async def consume() -> None:
            subscription = await broker.subscribe("t", prefetch=5)
            delivery = await subscription.receive(GUARD)
            assert delivery is not None
            await delivery.ack()
            received.set()
            await _until(lambda: subscription.closed, "the close")
            try:
                await subscription.receive(GUARD)
            except brokerkit.BrokerClosed:
                outcome.append("ended")

        asyncio.run(consume())

    thread = threading.Thread(target=consumer_thread, daemon=True)
    watcher.publish_many("t", [1, 2, 3])
    thread.start()
    assert received.wait(GUARD)

    async def close() -> None:
        await asyncio.wait_for(broker.close(), GUARD)

    try:
        asyncio.run(close())
        thread.join(GUARD)
        assert outcome == ["ended"]
        info = watcher.inspect("t")
        assert info.in_flight == 0
        assert info.groups[0].lag == 2  # the two prefetched, handed back
    finally:
        watcher.close()


async def _connect(url: str) -> AsyncBroker:
    return await brokerkit.aio.connect(url)


def test_a_broker_closed_from_another_loop_closes_a_subscription_whose_loop_ended() -> None:
    """The loop a subscription was made on has ended: the close runs here instead."""
    name = _name()
    watcher = brokerkit.connect(name)
    broker: AsyncBroker = asyncio.run(_connect(name))

    async def prefetch() -> None:
        await broker.publish_many("t", [1, 2, 3])
        subscription = await broker.subscribe("t", prefetch=3)
        delivery = await subscription.receive(GUARD)
        assert delivery is not None
        await delivery.ack()

    asyncio.run(prefetch())

    async def close() -> None:
        await asyncio.wait_for(broker.close(), GUARD)

    asyncio.run(close())
    try:
        assert watcher.inspect("t").in_flight == 0
    finally:
        watcher.close()


# -- 3. a closed pattern subscription leaves no group behind ----------------------------


def test_a_receive_cancelled_while_a_pattern_subscription_closes_leaves_no_group() -> None:
    """The close waits for the receive's fetch; the receive is cancelled meanwhile: its
    fetch, left running, must neither make the retired group again nor replay the
    acked messages into it (a group "all" has read everything: nothing waits)."""

    async def main() -> brokerkit.TopicInfo:
        async with brokerkit.aio.connect("memory://") as broker:
            reader = await broker.subscribe("orders.eu", group="all")
            await broker.publish("orders.eu", "old")
            subscription = await broker.subscribe("orders.*", pattern=True)
            await broker.publish_many("orders.eu", [1, 2, 3])
            for _ in range(3):
                delivery = await subscription.receive(GUARD)
                assert delivery is not None
                await delivery.ack()
            for _ in range(4):
                delivery = await reader.receive(GUARD)
                assert delivery is not None
                await delivery.ack()
            receiving = asyncio.create_task(subscription.receive())
            await _until(subscription._fetching.locked, "the fetch")
            closing = asyncio.create_task(subscription.close())
            await _until(lambda: subscription.closed, "the close")
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
            await closing
            await _until(lambda: not subscription._orphans, "the leftover fetch's end")
            return await broker.inspect("orders.eu")

    info = run(main())
    assert [group.name for group in info.groups] == ["all"]
    assert info.in_flight == 0
    assert info.oldest_waiting_age is None


def test_a_fetch_for_a_closed_pattern_subscription_takes_nothing() -> None:
    """The memory backend's fetch, for a pattern subscription closed (its group
    retired and dropped): nothing is leased, no group made again."""

    async def main() -> tuple[list[Any], brokerkit.TopicInfo]:
        async with brokerkit.aio.connect("memory://") as broker:
            subscription = await broker.subscribe("orders.*", pattern=True)
            await broker.publish_many("orders.eu", [1, 2])
            await subscription.close()
            fetched = await broker._fetch(subscription, 10, 0)
            return fetched, await broker.inspect("orders.eu")

    fetched, info = run(main())
    assert fetched == []
    assert info.groups == ()
    assert info.in_flight == 0


# -- 4. acquire(lock, 0) never waits ------------------------------------------------------


def test_acquire_with_no_time_does_not_queue_behind_a_woken_waiter() -> None:
    """Just after a release that woke a waiter the lock looks free, but taking it would
    queue behind that waiter: ``acquire(lock, 0)`` says no at once instead."""

    async def main() -> None:
        lock = Lock()
        await lock.acquire()
        queued, done = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            queued.set()
            async with lock:  # held until the test is done, or for 5 s (a hang guard)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(done.wait(), 5.0)

        other = asyncio.create_task(holder())
        await queued.wait()
        lock.release()  # wakes the holder, which has not run yet
        try:
            # Awaited in this very task: one of its own would start after the holder
            # took the lock. (It used to wait behind the holder, and take the lock.)
            assert await acquire(lock, 0) is False
            assert await acquire(lock, 0.01) is False
        finally:
            done.set()
            await other
        assert await acquire(lock, 0) is True  # free now: taken at once
        lock.release()

    run(main())


# -- 5. closing a broker with consumers waiting --------------------------------------------


def test_closing_a_broker_with_five_waiting_consumers_takes_no_second_each() -> None:
    """Each consumer waits in a fetch that nothing would wake: the close wakes them all."""

    async def main() -> float:
        broker = await brokerkit.aio.connect("memory://")
        subscriptions = [await broker.subscribe("t", group=f"g{i}") for i in range(5)]

        async def consume(subscription: AsyncSubscription) -> None:
            async for _ in subscription:
                pass

        tasks = [asyncio.create_task(consume(s)) for s in subscriptions]
        await _until(lambda: all(s._fetching.locked() for s in subscriptions), "the fetches")
        started = time.monotonic()
        await broker.close()
        took = time.monotonic() - started
        await asyncio.wait_for(asyncio.gather(*tasks), GUARD)
        return took

    assert run(main()) < 3.0  # one second a consumer, before: about 5 s


def test_closing_a_subscription_wakes_its_waiting_receive_sync() -> None:
    """The sync API: a receive waiting in another thread ends as soon as the close."""
    with brokerkit.connect("memory://") as broker:
        subscriptions = [broker.subscribe("t", group=f"g{i}") for i in range(5)]
        ended: list[str] = []

        def consume(subscription: brokerkit.Subscription) -> None:
            for _ in subscription:
                pass
            ended.append(subscription.group)

        threads = [threading.Thread(target=consume, args=(s,)) for s in subscriptions]
        for thread in threads:
            thread.start()
        wait_until(
            lambda: all(s._fetching.locked() for s in subscriptions), "the fetches", within=GUARD
        )
        started = time.monotonic()
        broker.close()
        took = time.monotonic() - started
        for thread in threads:
            thread.join(GUARD)
    assert sorted(ended) == [f"g{i}" for i in range(5)]
    assert took < 3.0


# -- 6. a pattern subscription's private group is its own ------------------------------------


def test_a_group_named_like_a_pattern_subscriptions_private_group_is_not_shared() -> None:
    async def main() -> tuple[Any, Any, Any, list[str]]:
        async with brokerkit.aio.connect("memory://") as broker:
            app = await broker.subscribe("a.x", group="pattern:c:1")
            pattern = await broker.subscribe("a.*", pattern=True, consumer="c")
            await broker.publish_many("a.x", [1, 2])
            first = await app.receive(GUARD)
            assert first is not None
            theirs = await pattern.receive(GUARD)
            assert theirs is not None
            groups = [g.name for g in (await broker.inspect("a.x")).groups]
            await theirs.ack()
            await pattern.close()
            await first.nack()  # requeued: back to the application's group
            again = await app.receive(GUARD)
            assert again is not None
            await again.ack()
            return first.body, theirs.body, again.body, groups

    first, theirs, again, groups = run(main())
    assert first == 1 and theirs == 1  # each group gets every message
    assert again == first
    assert len(groups) == 2 and "pattern:c:1" in groups


# -- 7. consume(limit=...) --------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["2", 1.5, -1, True])
def test_consume_refuses_a_limit_that_is_not_a_whole_number_before_subscribing(
    limit: Any,
) -> None:
    async def main() -> brokerkit.TopicInfo:
        async with brokerkit.aio.connect("memory://") as broker:
            await broker.publish_many("t", [1, 2, 3])
            with pytest.raises(InvalidOption, match=r"limit .*whole number.*got " + repr(limit)):
                async for _ in broker.consume("t", timeout=0, limit=limit):
                    pass
            return await broker.inspect("t")

    info = run(main())
    assert info.groups == () and info.in_flight == 0


@pytest.mark.parametrize("limit", ["2", 1.5, -1, True])
def test_sync_consume_refuses_a_bad_limit_too(limit: Any) -> None:
    with brokerkit.connect("memory://") as broker:
        with pytest.raises(InvalidOption, match="limit"):
            next(iter(broker.consume("t", timeout=0, limit=limit)))
        assert broker.inspect("t").groups == ()


@pytest.mark.parametrize("limit", [None, 0, 2])
def test_consume_takes_none_or_a_whole_number_as_its_limit(limit: int | None) -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish_many("t", [1, 2, 3])
        got = []
        for delivery in broker.consume("t", timeout=0, limit=limit):
            got.append(delivery.body)
            delivery.ack()
        assert got == [1, 2, 3][: 3 if limit is None else limit]
