"""redis+pubsub tells ``on_gap`` of a gap before any delivery received after it.

875e6b6 moved ``on_gap`` out of the fetch (told by the receive after it let go of the
fetch's lock), which broke that promise two ways: a receive cancelled while it
fetched (a ``wait_for`` timeout) left its fetch running, which found the gap and told
nobody, and the next receive returned what a later cancelled receive had read after
the gap (handed back into the buffer); and with several receivers on one subscription
(a worker's concurrency), another receiver returned messages published after the gap
while ``on_gap`` still ran. ``on_gap`` runs within the fetch again.

Every wait is bounded, so a hang fails its test instead of the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.pubsub import Gap
from brokerkit.exceptions import BrokerClosed
from tests.pubsub_gaps import kill_subscriber
from tests.redis_server import RedisServer
from tests.waiting import wait_until_async

#: The most any one step may take (a bound against a hang, not an expectation).
BOUND = 20.0
#: How long on_gap gives another receiver to return a message published after the gap
#: (it returns one within milliseconds where it can; the test passes only by waiting).
WINDOW = 2.0


async def _cancelled_mid_fetch(subscription: brokerkit.aio.AsyncSubscription) -> None:
    """A receive cancelled while its fetch is under way (as a ``wait_for`` timeout
    cancels one): the fetch runs on, on its own."""
    task = asyncio.ensure_future(subscription.receive(timeout=BOUND))
    end = time.monotonic() + BOUND
    # one step of the loop at a time: the receive takes the fetch's lock and awaits
    # the fetch in its first step, before that fetch can have read anything
    while not (subscription._fetching.locked() or task.done()):
        assert time.monotonic() < end, "gave up waiting for the fetch"
        await asyncio.sleep(0)
    assert not task.done(), "the receive ended before it could be cancelled"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, BOUND)
    assert task.cancelled()
    # the fetch it left running ends, and hands back what it read
    await wait_until_async(
        lambda: not subscription._orphans, "the cancelled receive's fetch", BOUND
    )


@pytest.mark.timeout(90)
def test_a_gap_is_told_before_what_cancelled_receives_read_after_it(
    redis_server: RedisServer,
) -> None:
    consumer = f"review33-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()
    events: list[str] = []

    def on_gap(gap: Gap) -> None:
        events.append(f"gap {gap.number}")

    async def main() -> None:
        url = redis_server.url("redis+pubsub")
        async with brokerkit.aio.connect(url, on_gap=on_gap) as broker:
            subscription = await broker.subscribe("news", consumer=consumer)
            kill_subscriber(client, consumer)
            # its fetch finds the gap (and, subscribed anew, goes on reading)
            await _cancelled_mid_fetch(subscription)
            for body in ("after-1", "after-2"):
                assert (await broker.publish_counted("news", body)).receivers == 1
            # its fetch reads them: handed back, for the next receives
            await _cancelled_mid_fetch(subscription)
            while len(events) < 3:
                delivery = await asyncio.wait_for(subscription.receive(timeout=BOUND), BOUND)
                assert delivery is not None
                events.append(f"delivery {delivery.body}")
            assert events == ["gap 1", "delivery after-1", "delivery after-2"]

    try:
        asyncio.run(main())
    finally:
        client.close()


@pytest.mark.timeout(90)
def test_other_receivers_wait_for_on_gap_under_asyncio(redis_server: RedisServer) -> None:
    consumer = f"review33-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()
    events: list[str] = []

    async def main() -> None:
        url = redis_server.url("redis+pubsub")
        received = asyncio.Event()
        brokers: list[brokerkit.aio.AsyncBroker] = []

        async def on_gap(gap: Gap) -> None:
            events.append("gap start")
            for body in ("after-1", "after-2"):
                assert (await brokers[0].publish_counted("news", body)).receivers == 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(received.wait(), WINDOW)
            events.append("gap end")

        async with brokerkit.aio.connect(url, on_gap=on_gap) as broker:
            brokers.append(broker)
            subscription = await broker.subscribe("news", consumer=consumer)

            async def receiver() -> None:
                while True:
                    try:
                        delivery = await subscription.receive(timeout=0.2)
                    except BrokerClosed:
                        return
                    if delivery is not None:
                        events.append(f"delivery {delivery.body}")
                        received.set()

            receivers = [asyncio.ensure_future(receiver()) for _ in range(2)]
            try:
                kill_subscriber(client, consumer)
                await wait_until_async(lambda: len(events) >= 4, "the gap and both messages", BOUND)
            finally:
                await asyncio.wait_for(subscription.close(), BOUND)
                await asyncio.wait_for(asyncio.gather(*receivers), BOUND)
            assert events == ["gap start", "gap end", "delivery after-1", "delivery after-2"]

    try:
        asyncio.run(main())
    finally:
        client.close()


@pytest.mark.timeout(90)
def test_other_receivers_wait_for_on_gap_in_threads(redis_server: RedisServer) -> None:
    consumer = f"review33-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()
    events: list[str] = []
    lock = threading.Lock()
    received = threading.Event()
    brokers: list[brokerkit.Broker] = []

    def note(event: str) -> None:
        with lock:
            events.append(event)

    def on_gap(gap: Gap) -> None:
        note("gap start")
        for body in ("after-1", "after-2"):
            assert brokers[0].publish_counted("news", body).receivers == 1
        received.wait(WINDOW)
        note("gap end")

    url = redis_server.url("redis+pubsub")
    try:
        with brokerkit.connect(url, on_gap=on_gap) as broker:
            brokers.append(broker)
            subscription = broker.subscribe("news", consumer=consumer)

            def receiver() -> None:
                while True:
                    try:
                        delivery = subscription.receive(timeout=0.2)
                    except BrokerClosed:
                        return
                    if delivery is not None:
                        note(f"delivery {delivery.body}")
                        received.set()

            threads = [threading.Thread(target=receiver, daemon=True) for _ in range(2)]
            for thread in threads:
                thread.start()
            try:
                kill_subscriber(client, consumer)
                end = time.monotonic() + BOUND
                while len(events) < 4 and time.monotonic() < end:
                    received.wait(0.05)
            finally:
                subscription.close()
                for thread in threads:
                    thread.join(BOUND)
            assert not any(thread.is_alive() for thread in threads)
            assert events == ["gap start", "gap end", "delivery after-1", "delivery after-2"]
    finally:
        client.close()
