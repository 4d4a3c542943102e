"""brokerkit.aio on the memory backend: connect, cancellation, the event loop never
blocked, and the registry's native asyncio classes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

import brokerkit
import brokerkit.aio
from brokerkit._registry import BackendRegistry
from brokerkit.backends.memory import AsyncMemoryBroker, MemoryBroker
from brokerkit.contracts import BrokerContract, ManualTimeline
from brokerkit.exceptions import BrokerClosed, PluginError
from tests.loop_lag import Ticker, frozen_heap

_T = TypeVar("_T")


def run(main: Callable[[], Awaitable[_T]]) -> _T:
    async def wrapped() -> _T:
        return await main()

    return asyncio.run(wrapped())


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll ``condition`` (a deadline, not a sleep, decides when to give up)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


async def leased(broker: brokerkit.aio.AsyncBroker, count: int) -> None:
    """Wait until ``count`` deliveries of "jobs" are leased (a fetch is under way)."""

    async def check() -> bool:
        return (await broker.inspect("jobs")).in_flight == count

    await until(check)


async def waiting(broker: AsyncMemoryBroker) -> None:
    """Wait until a receive on ``broker`` blocks on its empty topic."""

    async def check() -> bool:
        return bool(broker._store._waiters)

    await until(check)


def fresh_url() -> str:
    return f"memory://aio-{uuid.uuid4().hex[:12]}"


def test_connect_is_awaitable_and_an_async_context_manager() -> None:
    async def main() -> None:
        broker = await brokerkit.aio.connect(fresh_url())
        assert isinstance(broker, AsyncMemoryBroker)
        await broker.close()
        assert broker.closed
        async with brokerkit.aio.connect(fresh_url()) as other:
            assert not other.closed
        assert other.closed

    run(main)


def test_the_same_errors_as_the_sync_api() -> None:
    async def main() -> None:
        with pytest.raises(brokerkit.UnknownScheme):
            await brokerkit.aio.connect("nope://")
        with pytest.raises(brokerkit.InvalidOption, match="valid options"):
            await brokerkit.aio.connect("memory://?bogus=1")
        async with brokerkit.aio.connect(fresh_url()) as broker:
            with pytest.raises(brokerkit.InvalidTopic):
                await broker.publish("", b"x")
            with pytest.raises(brokerkit.SerializationError):
                await broker.publish("t", object())
            assert (await broker.inspect("t")).length == 0

    run(main)


def test_sync_and_async_connections_to_one_named_memory_broker_share_it() -> None:
    url = fresh_url()

    async def main() -> None:
        with brokerkit.connect(url) as sync_broker:
            async with brokerkit.aio.connect(url) as async_broker:
                subscription = await async_broker.subscribe("jobs")
                waiting = asyncio.ensure_future(subscription.receive(timeout=5))
                await asyncio.sleep(0)  # the receive is waiting when the publish comes
                await asyncio.to_thread(sync_broker.publish, "jobs", {"n": 1})
                delivery = await waiting
                assert delivery is not None and delivery.body == {"n": 1}
                await delivery.ack()
                assert (await async_broker.inspect("jobs")).in_flight == 0

    run(main)


def test_cancelling_a_blocked_receive_strands_nothing() -> None:
    url = fresh_url()

    async def main() -> None:
        async with brokerkit.aio.connect(url) as broker:
            subscription = await broker.subscribe("jobs", prefetch=10)
            receiving = asyncio.ensure_future(subscription.receive())
            await waiting(broker)
            receiving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await receiving
            await broker.publish_many("jobs", range(5))
            other = await broker.subscribe("jobs", prefetch=10)
            got = [await other.receive(timeout=1) for _ in range(5)]
            assert sorted(d.body for d in got if d is not None) == [0, 1, 2, 3, 4]

    run(main)


class SlowFetch(AsyncMemoryBroker):
    """Takes its deliveries, then is slow to return them: a caller's cancellation lands
    while the leased deliveries are on their way back."""

    async def _fetch(self, *args: Any) -> Any:
        fetched = await super()._fetch(*args)
        await asyncio.sleep(0.2)
        return fetched


async def cancel_a_receive_mid_fetch(url: str) -> tuple[AsyncMemoryBroker, Any]:
    """A slow broker on ``url`` whose receive of 3 messages was cancelled while its
    fetch had them leased; returns the broker and the subscription."""
    slow = SlowFetch.from_url(url, visibility_timeout=3600)
    subscription = await slow.subscribe("jobs", prefetch=3)
    receiving = asyncio.ensure_future(subscription.receive())
    await leased(slow, 3)  # inside the fetch, which has leased the 3
    receiving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receiving
    return slow, subscription


def test_a_fetch_cut_off_by_cancellation_hands_its_deliveries_back_at_once() -> None:
    url = fresh_url()

    async def main() -> None:
        async with brokerkit.aio.connect(url) as broker:
            await broker.publish_many("jobs", range(3))
            slow, _ = await cancel_a_receive_mid_fetch(url)
            other = await broker.subscribe("jobs", prefetch=3)
            # Handed back when the fetch ends, not after the hour-long lease.
            got = [await other.receive(timeout=2) for _ in range(3)]
            assert sorted(d.body for d in got if d is not None) == [0, 1, 2]
            assert all(d is not None and d.attempt == 1 for d in got)  # nobody saw them
        await slow.close()

    run(main)


def test_leaving_async_for_early_hands_back_what_was_prefetched() -> None:
    url = fresh_url()

    async def main() -> None:
        async with brokerkit.aio.connect(url, visibility_timeout=3600) as broker:
            await broker.publish_many("jobs", range(10))
            async for delivery in broker.consume("jobs", prefetch=10):
                await delivery.ack()
                break
            # The generator is finalized by the loop once it is dropped.
            for _ in range(10):
                if (await broker.inspect("jobs")).in_flight == 0:
                    break
                await asyncio.sleep(0)
            info = await broker.inspect("jobs")
            assert info.in_flight == 0
            other = await broker.subscribe("jobs", prefetch=10)
            rest = [await other.receive(timeout=1) for _ in range(9)]
            assert sorted(d.body for d in rest if d is not None) == list(range(1, 10))

    run(main)


def test_close_during_a_receive_ends_it_cleanly() -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(fresh_url()) as broker:
            subscription = await broker.subscribe("jobs")
            receiving = asyncio.ensure_future(subscription.receive())
            await waiting(broker)
            await broker.close()
            with pytest.raises(BrokerClosed):
                await receiving
            assert subscription.closed

    run(main)


def test_the_event_loop_is_never_blocked_while_50_consumers_drain_10000_messages() -> None:
    """A blocking call in the memory backend's asyncio path would stall the loop for
    its whole length (see tests/loop_lag.py)."""
    url = fresh_url()
    count, consumers = 10_000, 50

    async def main() -> Ticker:
        async with brokerkit.aio.connect(url) as broker:
            await broker.publish_many("jobs", range(count))
            seen: list[int] = []

            async def consume() -> None:
                async for delivery in broker.consume("jobs", prefetch=20, timeout=0.2):
                    seen.append(delivery.body)
                    await delivery.ack()

            async with Ticker() as ticker:
                await asyncio.gather(*(consume() for _ in range(consumers)))
        assert sorted(seen) == list(range(count))
        return ticker

    with frozen_heap():
        ticker = run(main)
    assert ticker.net < 0.1, ticker.report("stalled")


def test_registry_keeps_a_native_asyncio_class_beside_the_sync_one() -> None:
    registry = BackendRegistry()
    registry.add(MemoryBroker, aio=AsyncMemoryBroker)
    info = registry.get("memory")
    assert info.load() is MemoryBroker
    assert info.load_async() is AsyncMemoryBroker
    registry.add(
        "brokerkit.backends.memory:MemoryBroker",
        schemes=("lazy",),
        aio="brokerkit.backends.memory:AsyncMemoryBroker",
    )
    assert registry.get("lazy").load_async() is AsyncMemoryBroker
    with pytest.raises(PluginError, match="module:Class"):
        registry.add(MemoryBroker, schemes=("other",), aio="no-colon")


def test_a_plugin_without_an_asyncio_class_gets_the_thread_adapter() -> None:
    registry = BackendRegistry()
    registry.add(MemoryBroker, schemes=("plain",))
    info = registry.get("plain")
    assert info.load_async() is None
    adapted = brokerkit.aio.threaded(info.load())
    assert issubclass(adapted, brokerkit.aio.ThreadedAsyncBroker)
    assert adapted.capabilities == MemoryBroker.capabilities
    assert brokerkit.aio.threaded(MemoryBroker) is adapted


@pytest.mark.parametrize("attribute", ["extend_beyond_timeout", "extend_shortens"])
def test_the_adapters_keep_what_the_contract_suite_reads_of_the_class(attribute: str) -> None:
    """A plugin that declares one of these False keeps it under the other API, or the
    contract suite holds its adapted class to a promise it does not make."""

    class Plain(MemoryBroker):
        schemes = ("plain-flags",)

    class Native(AsyncMemoryBroker):
        schemes = ("native-flags",)

    for cls in (Plain, Native):
        setattr(cls, attribute, False)
    assert getattr(brokerkit.aio.threaded(Plain), attribute) is False
    assert getattr(brokerkit.aio.bridged(Native), attribute) is False


class TestAsyncOnlyBackendThroughTheLoopBridge(BrokerContract):
    """An asyncio-only backend under the sync API: the memory backend's asyncio class,
    run by the loop bridge, keeps the whole contract."""

    @pytest.fixture
    def clock(self) -> brokerkit.ManualClock:
        return brokerkit.ManualClock()

    @pytest.fixture
    def make_broker(self, clock: brokerkit.ManualClock) -> Any:
        url = fresh_url()
        bridge = brokerkit.aio.bridged(AsyncMemoryBroker)
        return lambda **options: bridge.from_url(url, clock=clock, **options)

    @pytest.fixture
    def timeline(self, clock: brokerkit.ManualClock) -> ManualTimeline:
        return ManualTimeline(clock)


def test_a_body_larger_than_the_backend_stores_is_refused_before_anything_is_sent() -> None:
    class Small(AsyncMemoryBroker):
        max_payload_bytes = 1000

    async def main() -> None:
        broker = Small.from_url(fresh_url())
        with pytest.raises(brokerkit.InvalidMessage, match=r"1,001 bytes .*\(1,000 bytes\)"):
            await broker.publish_many("t", [b"ok", b"x" * 1001])
        assert (await broker.inspect("t")).length == 0  # not even the first one
        await broker.publish("t", b"x" * 1000)
        await broker.close()

    run(main)


def test_a_fetch_orphaned_by_a_cancelled_receive_is_handed_back_before_close_returns() -> None:
    url = fresh_url()

    async def main() -> None:
        async with brokerkit.aio.connect(url) as broker:
            await broker.publish_many("jobs", range(3))
            slow, subscription = await cancel_a_receive_mid_fetch(url)
            await subscription.close()  # waits for the orphaned fetch and its hand-back
            assert (await broker.inspect("jobs")).in_flight == 0
        await slow.close()

    run(main)


def test_waiting_consumers_leave_nothing_behind_in_the_store() -> None:
    url = fresh_url()

    async def main() -> None:
        with brokerkit.connect(url) as sync_broker:
            async with brokerkit.aio.connect(url) as broker:
                subscription = await broker.subscribe("idle")
                for _ in range(20):
                    assert await subscription.receive(timeout=0.005) is None
                sync_subscription = sync_broker.subscribe("idle")
                for _ in range(20):
                    assert sync_subscription.receive(timeout=0.005) is None
                assert not broker._store._waiters  # each timed-out waiter left

    run(main)


def test_the_thread_adapter_hands_back_through_the_backends_own_rule() -> None:
    """A cancelled receive under the thread adapter returns what its fetch took through
    the wrapped backend's own hand-back, as under the sync API (the memory backend's
    requeues; a backend with its own rule keeps it)."""
    url = fresh_url()
    handed_back: list[int] = []

    class CountsHandBacks(MemoryBroker):
        def _hand_back(self, deliveries: list[Any]) -> None:
            handed_back.append(len(deliveries))
            super()._hand_back(deliveries)

    class SlowSync(CountsHandBacks):
        def _fetch(self, *args: Any) -> Any:
            fetched = super()._fetch(*args)
            time.sleep(0.2)  # the fetch is still under way when the receive is cancelled
            return fetched

    async def main() -> None:
        broker = await brokerkit.aio.threaded(SlowSync).open(brokerkit.BrokerURL.parse(url))
        await broker.publish_many("jobs", range(3))
        subscription = await broker.subscribe("jobs", prefetch=3)
        receiving = asyncio.ensure_future(subscription.receive())
        await leased(broker, 3)  # inside the fetch, which has leased the 3
        receiving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await receiving
        await subscription.close()
        assert [n for n in handed_back if n] == [3]  # the orphaned fetch, once
        assert (await broker.inspect("jobs")).in_flight == 0
        await broker.close()

    run(main)


def test_prefetch_can_be_bounded_in_bytes() -> None:
    url = fresh_url()
    with brokerkit.connect(url) as broker:
        broker.publish_many("big", [b"x" * 1000] * 10)
        subscription = broker.subscribe("big", prefetch=10, prefetch_bytes=2500)
        held = []
        for _ in range(10):
            delivery = subscription.receive(timeout=1)
            assert delivery is not None
            # fetched and not yet settled: this delivery and what is still buffered
            held.append((1 + subscription.buffered) * 1000)
            delivery.ack()
        assert max(held) <= 2500
        assert subscription.receive(timeout=0) is None
        with pytest.raises(brokerkit.InvalidOption, match="prefetch_bytes"):
            broker.subscribe("big", prefetch_bytes=0)


def test_memory_hands_back_what_nobody_saw_first_in_line_with_no_attempt_counted() -> None:
    url = fresh_url()
    with brokerkit.connect(url, max_deliveries=1) as broker:
        broker.publish_many("jobs", range(5))
        for delivery in broker.consume("jobs", prefetch=5, limit=1):
            delivery.ack()  # the other four were prefetched, never seen
        rest = list(broker.consume("jobs", prefetch=5, timeout=0))
        assert [(d.body, d.attempt) for d in rest] == [(1, 1), (2, 1), (3, 1), (4, 1)]
        broker.ack(*rest)
        assert broker.inspect("jobs").dead_lettered == 0
