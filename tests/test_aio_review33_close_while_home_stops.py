"""A subscription closed from another event loop while its own loop stops hands back
what it had buffered (fetched and leased, not received) at once, exactly once.

Before, the broker's close sent the closing to the
subscription's loop and, when that loop stopped before the closing ran there (its
thread shutting down: ``loop.stop()``, the end of ``asyncio.run()``), gave up with a
warning: the buffered deliveries stayed leased until their leases ran out. Where the
backend cannot hand back without that loop (an asyncio Redis broker, whose connections
belong to it), the leases still run out on their own, and a warning now says how many
and what to do (before, nothing was said).

The home loop runs ``run_forever`` in a thread of its own; to stop it right after the
close from the other loop has sent it work (a deterministic race, no sleeps), a
callback on it calls ``loop.stop()`` and waits, blocking that loop, until
``call_soon_threadsafe`` was called on it (watched by wrapping the loop's method)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

import brokerkit.aio
from brokerkit.aio import AsyncBroker, AsyncSubscription

#: Seconds any wait here may take at most: a hang guard, never a pace.
GUARD = 20.0

_T = TypeVar("_T")


class Home:
    """An event loop running in a thread of its own, as a second ``asyncio.run``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(GUARD)

    def stop_once_sent_work(self) -> threading.Event:
        """Make the loop stop as soon as another thread sends it work (before it runs
        that work); the event returned is set once it has stopped."""
        loop = self.loop
        sent = threading.Event()
        original = loop.call_soon_threadsafe

        def watched(*args: Any, **kwargs: Any) -> Any:
            handle = original(*args, **kwargs)
            sent.set()
            return handle

        def stop_when_sent() -> None:
            loop.stop()
            assert sent.wait(GUARD), "no work was sent to the loop"

        loop.call_soon_threadsafe(stop_when_sent)
        loop.call_soon_threadsafe = watched  # type: ignore[method-assign]
        stopped = threading.Event()

        def wait_stopped() -> None:
            self.thread.join(GUARD)
            loop.call_soon_threadsafe = original  # type: ignore[method-assign]
            stopped.set()

        threading.Thread(target=wait_stopped, daemon=True).start()
        return stopped

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(GUARD)
        if not self.loop.is_closed():
            # What was left pending there runs on first: a few turns of the loop.
            for _ in range(10):
                self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()


@pytest.fixture
def home() -> Iterator[Home]:
    home = Home()
    try:
        yield home
    finally:
        home.close()


async def _two_buffered(broker: AsyncBroker, topic: str) -> AsyncSubscription:
    subscription = await broker.subscribe(topic, group="g", prefetch=3)
    await broker.publish_many(topic, ["a", "b", "c"])
    first = await subscription.receive(GUARD)
    assert first is not None
    await first.ack()
    assert subscription.buffered == 2
    return subscription


def _in_flight_after(
    home: Home,
    url: str,
    close: Callable[[AsyncBroker, AsyncSubscription], Coroutine[Any, Any, None]],
) -> tuple[int, int]:
    """Buffer two deliveries on ``home``'s loop, stop that loop as ``close`` (run on a
    loop of its own, here) sends it the closing, and return the deliveries in flight
    then, and how many messages a new consumer gets after the home loop ran again."""
    topic = "t"

    async def on_other_loop() -> tuple[int, int]:
        async with brokerkit.aio.connect(url) as observer:
            broker = home.run(_connect(url))
            subscription = home.run(_two_buffered(broker, topic))
            stopped = home.stop_once_sent_work()
            await asyncio.wait_for(close(broker, subscription), GUARD)
            assert await asyncio.to_thread(stopped.wait, GUARD)
            in_flight = (await observer.inspect(topic)).in_flight
            # The home loop runs once more: its half-done close goes on.
            await asyncio.to_thread(home.close)
            got = 0
            async for delivery in observer.consume(topic, group="g", timeout=0):
                await delivery.ack()
                got += 1
            return in_flight, got

    return asyncio.run(on_other_loop())


async def _connect(url: str) -> AsyncBroker:
    return await brokerkit.aio.connect(url)


async def _close_broker(broker: AsyncBroker, subscription: AsyncSubscription) -> None:
    await broker.close()


@pytest.fixture(params=["memory", "redis+list"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return f"memory://aio-review33-home-stops-{uuid.uuid4().hex}"
    target = request.getfixturevalue("redis_target")
    return str(target.url(request.param, prefix=request.getfixturevalue("prefix")))


def test_buffered_deliveries_go_back_at_once_when_the_home_loop_stops(
    home: Home, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    in_flight, got = _in_flight_after(home, url, _close_broker)
    if url.startswith("memory:"):
        # The memory broker needs no loop to hand back: back at once, exactly once.
        assert in_flight == 0, f"{in_flight} buffered delivery(ies) left leased"
        assert got == 2, f"a new consumer got {got} messages, not the 2 handed back once"
    else:
        # An asyncio Redis broker's connections belong to its loop, which stopped: the
        # leases run out on their own, and a warning says how many and what to do.
        assert (in_flight, got) == (2, 0)
        assert any(
            "could not hand back 2 delivery(ies)" in record.getMessage()
            and "Close the broker on its own loop" in record.getMessage()
            for record in caplog.records
        ), [record.getMessage() for record in caplog.records]


def test_a_subscription_closed_from_another_loop_while_it_receives_at_home(home: Home) -> None:
    """A subscription's own close, called on another thread's loop while a receive of
    its own loop waits, is carried out on its loop (as the broker's close is): before,
    it ran where it was called, waited there for the receive's lock and raised
    RuntimeError ("waiting here for a task of another event loop"), and the
    subscription was never unsubscribed."""
    url = f"memory://aio-review33-close-elsewhere-{uuid.uuid4().hex}"
    broker = home.run(_connect(url))
    subscription = home.run(broker.subscribe("t", group="g"))

    async def start_receiving() -> asyncio.Task[Any]:
        task = asyncio.ensure_future(subscription.receive(GUARD))
        while not subscription._fetching.locked():  # its receive holds the lock
            await asyncio.sleep(0)
        return task

    receiving = home.run(start_receiving())
    asyncio.run(asyncio.wait_for(subscription.close(), GUARD))

    async def outcome() -> BaseException | None:
        try:
            await receiving
        except BaseException as exc:
            return exc
        return None

    assert isinstance(home.run(outcome()), brokerkit.BrokerClosed)
    assert subscription._ended.is_set(), "the closing did not end"
    home.run(broker.close())
