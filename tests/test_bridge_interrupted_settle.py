"""The loop bridge's ack or nack interrupted while its caller waits (Ctrl-C: a
KeyboardInterrupt in the main thread): the coroutine goes on on the bridge's loop, the
delivery stays being settled until it ends, and how it ends settles it (the hooks
told) or unsettles it; a close waits, for a bounded time, for such an ack."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
import brokerkit.aio._bridge
from brokerkit._delivery import SETTLING, Delivery
from brokerkit._delivery_async import AsyncDelivery
from brokerkit.aio import LoopBridgeBroker
from brokerkit.backends.memory import AsyncMemoryBroker
from brokerkit.exceptions import AlreadySettled
from tests.conftest import registered
from tests.interrupting import Gate, gated, watch_the_close

#: Seconds any wait of these tests may take at most: a hang guard, never a pace.
GUARD = 30.0


class HeldAsyncMemoryBroker(AsyncMemoryBroker):
    """The memory backend's asyncio class whose settling primitives pass the test's
    :class:`Gate` (if it set one) before they run: a seam, the real primitive runs."""

    gate: Gate | None = None

    async def _held(self) -> None:
        if self.gate is not None:
            await self.gate.pass_through()

    async def _ack(self, deliveries: Sequence[AsyncDelivery]) -> None:
        await self._held()
        await super()._ack(deliveries)

    async def _nack(self, deliveries: Sequence[AsyncDelivery], requeue: bool) -> None:
        await self._held()
        await super()._nack(deliveries, requeue)


class Recorder:
    """A plugin that writes down the acks and nacks the hooks are told of."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        self.calls.append(("ack", len(deliveries)))

    @brokerkit.hookimpl
    def brokerkit_on_nack(self, deliveries: Any, requeue: bool) -> None:
        self.calls.append(("nack", len(deliveries)))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    yield from registered(Recorder())


@pytest.fixture
def url() -> str:
    return f"memory://bridge-interrupted-{uuid.uuid4().hex}"


@pytest.fixture
def observer(url: str) -> Iterator[brokerkit.Broker]:
    """A plain memory broker on the store the bridge uses, which keeps it alive."""
    with brokerkit.connect(url) as other:
        yield other


@pytest.fixture
def broker(url: str, observer: brokerkit.Broker) -> Iterator[LoopBridgeBroker]:
    with gated(brokerkit.aio.bridged(HeldAsyncMemoryBroker).from_url(url)) as bridge:
        yield bridge


def _until(predicate: Callable[[], bool]) -> bool:
    """Whether ``predicate()`` became true within :data:`GUARD` (a bounded poll)."""
    deadline = time.monotonic() + GUARD
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def _received(broker: LoopBridgeBroker) -> Delivery:
    broker.publish("jobs", "x")
    delivery = broker.subscribe("jobs").receive(timeout=0)
    assert delivery is not None
    return delivery


def _left(observer: brokerkit.Broker) -> tuple[int, int | None]:
    """What the store has of ``jobs``: (in flight, waiting for its group)."""
    info = observer.inspect("jobs")
    return info.in_flight, info.groups[0].lag


def _settle(delivery: Delivery, how: str) -> None:
    if how == "ack":
        delivery.ack()
    else:
        delivery.nack()


@pytest.mark.parametrize(("how", "waiting"), [("ack", 0), ("nack", 1)])
def test_an_interrupted_settle_goes_on_and_settles_the_delivery_when_it_lands(
    broker: LoopBridgeBroker,
    observer: brokerkit.Broker,
    recorder: Recorder,
    interrupt_when: Callable[[threading.Event], None],
    how: str,
    waiting: int,
) -> None:
    delivery = _received(broker)
    gate = broker.inner.gate = Gate()  # type: ignore[attr-defined]
    interrupt_when(gate.entered)
    with pytest.raises(KeyboardInterrupt):
        _settle(delivery, how)
    # Its coroutine still holds it on the loop: being settled, not settleable again.
    assert delivery._settled is SETTLING and not delivery.settled
    with pytest.raises(AlreadySettled, match="being acked or nacked"):
        broker.ack(delivery)
    with pytest.raises(AlreadySettled):
        delivery.nack()
    assert recorder.calls == []
    gate.open()
    assert _until(lambda: delivery.settled)
    assert recorder.calls == [(how, 1)]
    assert delivery.receipt.settled
    with pytest.raises(AlreadySettled, match="already acked or nacked"):
        delivery.ack()
    assert _left(observer) == (0, waiting)


def test_an_interrupted_ack_that_fails_leaves_the_delivery_settleable(
    broker: LoopBridgeBroker,
    observer: brokerkit.Broker,
    recorder: Recorder,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    delivery = _received(broker)
    gate = broker.inner.gate = Gate(fail=True)  # type: ignore[attr-defined]
    interrupt_when(gate.entered)
    with pytest.raises(KeyboardInterrupt):
        delivery.ack()
    with pytest.raises(AlreadySettled):
        delivery.ack()
    gate.open()
    assert _until(lambda: delivery._settled is False)
    assert recorder.calls == []
    delivery.ack()  # not settled by the failed one: this one settles it
    assert delivery.settled and recorder.calls == [("ack", 1)]
    assert _left(observer) == (0, 0)


def test_a_close_waits_for_an_interrupted_ack_to_land(
    broker: LoopBridgeBroker,
    observer: brokerkit.Broker,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    delivery = _received(broker)
    gate = broker.inner.gate = Gate()  # type: ignore[attr-defined]
    interrupt_when(gate.entered)
    with pytest.raises(KeyboardInterrupt):
        delivery.ack()
    # The ack lands only once the close waits for it: a close that did not wait would
    # cut it off (its coroutine cancelled with the loop), settling nothing.
    waiting, _ = watch_the_close(broker)
    closing = threading.Thread(target=broker.close)
    closing.start()
    assert waiting.wait(GUARD)
    gate.open()
    closing.join(GUARD)
    assert not closing.is_alive()
    # Settled when the close returned: it waited for the ack rather than cut it off.
    assert delivery.settled
    assert _left(observer) == (0, 0)


def test_a_second_interrupt_during_the_close_still_closes(
    broker: LoopBridgeBroker,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    """Ctrl-C again while the close waits for an interrupted ack: the close is cut
    short, but still closes everything (its loop thread stopped), never half."""
    delivery = _received(broker)
    gate = broker.inner.gate = Gate()  # type: ignore[attr-defined]
    interrupt_when(gate.entered)
    with pytest.raises(KeyboardInterrupt):
        delivery.ack()
    waiting, _ = watch_the_close(broker)
    interrupt_when(waiting)
    with pytest.raises(KeyboardInterrupt):
        broker.close()
    assert broker.closed
    assert broker._loop.loop.is_closed()
    assert _until(lambda: delivery._settled is False)  # the ack cut off: settleable


def test_a_close_waits_a_bounded_time_for_an_interrupted_ack_that_does_not_end(
    broker: LoopBridgeBroker,
    interrupt_when: Callable[[threading.Event], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wait = 0.3
    monkeypatch.setattr(brokerkit.aio._bridge, "SETTLE_WAIT", wait, raising=False)
    delivery = _received(broker)
    gate = broker.inner.gate = Gate()  # type: ignore[attr-defined]
    interrupt_when(gate.entered)
    with pytest.raises(KeyboardInterrupt):
        delivery.ack()
    closing = threading.Thread(target=broker.close)
    started = time.monotonic()
    closing.start()
    closing.join(GUARD)
    assert not closing.is_alive()  # the gate never opened: the close did not hang
    assert time.monotonic() - started >= wait  # it waited for the ack first
    # Cut off by the close (its coroutine cancelled), the ack settled nothing.
    assert _until(lambda: delivery._settled is False)


def test_an_ack_interrupted_before_the_loop_began_it_never_runs(
    broker: LoopBridgeBroker,
    observer: brokerkit.Broker,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    """Interrupted while the loop is busy, before it began the ack: the ack never runs
    (given up, not going on), and the delivery can be acked again."""
    delivery = _received(broker)
    busy, release = threading.Event(), threading.Event()

    async def hold_the_loop() -> None:
        busy.set()
        release.wait(GUARD)  # blocks the loop's thread itself: nothing else runs there

    held = asyncio.run_coroutine_threadsafe(hold_the_loop(), broker._loop.loop)
    assert busy.wait(GUARD)
    scheduled = threading.Event()  # the ack sent to the loop: its caller waits next
    start = broker._start

    def started(coroutine: Any) -> Any:
        future = start(coroutine)
        scheduled.set()
        return future

    broker._start = started  # type: ignore[method-assign]
    interrupt_when(scheduled)
    try:
        with pytest.raises(KeyboardInterrupt):
            delivery.ack()
        assert delivery._settled is False  # given up: not being settled
    finally:
        release.set()
        held.result(GUARD)
    assert _left(observer) == (1, 0)  # the ack never ran
    delivery.ack()
    assert delivery.settled
    assert _left(observer) == (0, 0)
