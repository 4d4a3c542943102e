"""A settle cancelled while the thread adapter's worker thread runs its primitive.

A worker thread cannot be stopped: the sync ack (nack) goes on after its caller was
cancelled, and may still settle the message on the server. What the delivery says
must stay true: it reads as being settled (a second settle raises
:class:`AlreadySettled`, as while any settle is under way) until the thread's call
ends; then it is settled (and the settlement hooks are told, on the event loop, as for
a call that was not cancelled) if that call succeeded, or settleable again if it
failed. A cancelled extend marks nothing. A close waits for such a call; a call that
outlives its event loop still settles its deliveries.

Over real backends: the memory backend's sync broker under :func:`threaded`, and the
kombu+amqp broker (kombu's asyncio side is the thread adapter) against the shared
RabbitMQ. Each sync broker holds its first settling call at a gate, in its worker
thread, until the test lets it go: the cancellation lands while the thread is inside
the primitive, every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, ClassVar

import pytest

import brokerkit
from brokerkit import AlreadySettled, ConnectionFailed
from brokerkit._delivery import Delivery
from brokerkit.aio import AsyncBroker, AsyncDelivery
from brokerkit.aio._threaded import ThreadedAsyncBroker, threaded
from brokerkit.backends.kombu.amqp import KombuAMQPBroker
from brokerkit.backends.memory import AsyncMemoryBroker, MemoryBroker
from tests.conftest import registered
from tests.kombu_rabbitmq import delete_names, rabbitmq

__all__ = ["rabbitmq"]  # a fixture

#: Seconds any wait of these tests may take at most: a hang guard, never a pace.
GUARD = 30.0


class Gate:
    """Holds the first settling call that reaches it (in its worker thread) until the
    test lets it go; the call then runs the backend's own primitive, or raises
    :attr:`fail` instead (what a lost connection would raise). Later calls pass."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.left = threading.Event()
        self.fail: BaseException | None = None
        self._armed = True
        self._lock = threading.Lock()

    def through(self, primitive: Callable[[], None]) -> None:
        with self._lock:
            held, self._armed = self._armed, False
        if not held:
            primitive()
            return
        self.entered.set()
        try:
            assert self.release.wait(GUARD), "the test never let the call go"
            if self.fail is not None:
                raise self.fail
            primitive()
        finally:
            self.left.set()


class Gated:
    """A sync broker's settling primitives, each through the class's :class:`Gate`."""

    gate: ClassVar[Gate]

    def _ack(self, deliveries: Sequence[Delivery]) -> None:
        sync: Any = super()
        self.gate.through(lambda: sync._ack(deliveries))

    def _nack(self, deliveries: Sequence[Delivery], requeue: bool) -> None:
        sync: Any = super()
        self.gate.through(lambda: sync._nack(deliveries, requeue))

    def _extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        sync: Any = super()
        self.gate.through(lambda: sync._extend(deliveries, seconds))


class GatedMemory(Gated, MemoryBroker):
    pass


class GatedAMQP(Gated, KombuAMQPBroker):
    pass


class GatedAsyncMemory(AsyncMemoryBroker):
    """The native asyncio memory broker, its ack held at an asyncio gate."""

    entered: ClassVar[asyncio.Event]
    release: ClassVar[asyncio.Event]

    async def _ack(self, deliveries: Sequence[AsyncDelivery]) -> None:
        type(self).entered.set()
        await type(self).release.wait()
        await super()._ack(deliveries)


class Recorder:
    """A plugin that writes down the settlement hooks, and in which thread each ran;
    :attr:`ended` is set when a delivery's hooks end (the last of a settlement's)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.threads: set[int] = set()
        self.ended = threading.Event()

    def _saw(self, name: str, detail: Any) -> None:
        self.calls.append((name, detail))
        self.threads.add(threading.get_ident())

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any, scope: dict[str, Any]) -> None:
        pass  # (implemented so that the delivery hooks run, and end)

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str) -> None:
        self._saw("deliver_end", outcome)
        self.ended.set()

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        self._saw("ack", [d.id for d in deliveries])

    @brokerkit.hookimpl
    def brokerkit_on_nack(self, deliveries: Any, requeue: bool) -> None:
        self._saw("nack", ([d.id for d in deliveries], requeue))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    yield from registered(Recorder())


class Backend:
    """Adapted brokers of one backend whose first settling call waits at :attr:`gate`."""

    def __init__(self, kind: type[Gated], url: str, **options: Any) -> None:
        self.kind, self.url, self.options = kind, url, options
        self.gate = Gate()
        self.brokers: list[ThreadedAsyncBroker] = []

    async def open(self) -> ThreadedAsyncBroker:
        """A broker, closed when the test ends if the test did not close it."""
        broker = await threaded(self.kind).open(brokerkit.BrokerURL.parse(self.url), **self.options)
        self.brokers.append(broker)
        return broker

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[ThreadedAsyncBroker]:
        broker = await self.open()
        try:
            yield broker
        finally:
            self.gate.release.set()  # never leave a thread held, whatever failed
            await broker.close()


@pytest.fixture(params=["memory", "kombu+amqp"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The backend under test; what its brokers declared on RabbitMQ is deleted when
    the test ends."""
    if request.param == "memory":
        made = Backend(GatedMemory, f"memory://cancelled-settle-{uuid.uuid4().hex}")
    else:
        prefix = f"bkk-{uuid.uuid4().hex[:12]}"
        made = Backend(GatedAMQP, request.getfixturevalue("rabbitmq"), prefix=prefix)
    made.kind.gate = made.gate
    try:
        yield made
    finally:
        made.gate.release.set()
        for broker in made.brokers:
            if not broker.closed:
                asyncio.run(broker.close())
            if isinstance(broker.sync, KombuAMQPBroker):
                declared = broker.sync.declared
                delete_names(declared.exchanges, declared.queues)


async def _one_delivery(broker: AsyncBroker, topic: str) -> AsyncDelivery:
    subscription = await broker.subscribe(topic)
    await broker.publish(topic, b"x")
    delivery = await subscription.receive(timeout=10)
    assert delivery is not None
    return delivery


async def _cancel_inside_the_thread(gate: Gate, settling: Callable[[], Any]) -> asyncio.Task[None]:
    """Start ``settling()``; once its worker thread is inside the primitive (held at
    the gate), cancel it, and see the cancellation raised at once."""
    task: asyncio.Task[None] = asyncio.ensure_future(settling())
    assert await asyncio.to_thread(gate.entered.wait, GUARD), "the call never reached it"
    assert task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return task


async def _refused_while_the_thread_runs(delivery: AsyncDelivery) -> None:
    """The delivery reads as being settled: every settle, and an extend, refused."""
    assert not delivery.settled
    assert "settling" in repr(delivery)
    for again in (delivery.ack, delivery.nack, delivery.extend):
        with pytest.raises(AlreadySettled, match="is being acked or nacked already"):
            await again()


def _topic() -> str:
    return f"cancelled-{uuid.uuid4().hex[:8]}"


def test_a_cancelled_ack_is_settled_once_its_thread_has_acked(
    backend: Backend, recorder: Recorder
) -> None:
    gate = backend.gate

    async def main() -> None:
        async with backend.opened() as broker:
            topic = _topic()
            delivery = await _one_delivery(broker, topic)
            await _cancel_inside_the_thread(gate, delivery.ack)
            await _refused_while_the_thread_runs(delivery)
            assert recorder.calls == []  # nothing settled yet
            gate.release.set()
            assert await asyncio.to_thread(recorder.ended.wait, GUARD)
            assert delivery.settled
            assert "settled" in repr(delivery)
            with pytest.raises(AlreadySettled, match="was already acked or nacked"):
                await delivery.ack()
            # The hooks were told once, on the event loop, as for an ack not cancelled.
            assert recorder.calls == [("ack", [delivery.id]), ("deliver_end", "ack")]
            assert recorder.threads == {threading.get_ident()}
            # The ack reached the server once: nothing held, nothing to deliver again.
            assert (await broker.inspect(topic)).in_flight == 0
            assert await delivery.subscription.receive(timeout=0.3) is None

    asyncio.run(main())


def test_a_cancelled_nack_is_settled_once_its_thread_has_nacked(
    backend: Backend, recorder: Recorder
) -> None:
    gate = backend.gate

    async def main() -> None:
        async with backend.opened() as broker:
            delivery = await _one_delivery(broker, _topic())
            await _cancel_inside_the_thread(gate, delivery.nack)
            await _refused_while_the_thread_runs(delivery)
            gate.release.set()
            assert await asyncio.to_thread(recorder.ended.wait, GUARD)
            assert delivery.settled
            with pytest.raises(AlreadySettled):
                await delivery.nack()
            assert recorder.calls == [("nack", ([delivery.id], True)), ("deliver_end", "nack")]
            # Handed back once: delivered again, as its second attempt, and only then.
            again = await delivery.subscription.receive(timeout=10)
            assert again is not None and again.id == delivery.id and again.attempt == 2
            await again.ack()
            assert await delivery.subscription.receive(timeout=0.3) is None

    asyncio.run(main())


def test_a_cancelled_ack_whose_thread_fails_leaves_the_delivery_settleable(
    backend: Backend, recorder: Recorder
) -> None:
    gate = backend.gate
    gate.fail = ConnectionFailed("the connection was lost (a test's gate says so)")

    async def main() -> None:
        async with backend.opened() as broker:
            topic = _topic()
            delivery = await _one_delivery(broker, topic)
            await _cancel_inside_the_thread(gate, delivery.ack)
            await _refused_while_the_thread_runs(delivery)
            gate.release.set()
            assert await broker._threads_settled(GUARD)
            assert not delivery.settled
            assert "unsettled" in repr(delivery)
            assert recorder.calls == []  # no settlement to tell of
            await delivery.ack()  # settleable again: this one settles it
            assert delivery.settled
            assert recorder.calls == [("ack", [delivery.id]), ("deliver_end", "ack")]
            assert (await broker.inspect(topic)).in_flight == 0

    asyncio.run(main())


def test_a_cancelled_extend_marks_nothing(backend: Backend, recorder: Recorder) -> None:
    gate = backend.gate

    async def main() -> None:
        async with backend.opened() as broker:
            topic = _topic()
            delivery = await _one_delivery(broker, topic)
            await _cancel_inside_the_thread(gate, delivery.extend)
            # An extend under way never holds off a settle, cancelled or not.
            assert not delivery.settled and "unsettled" in repr(delivery)
            await delivery.ack()
            assert delivery.settled
            gate.release.set()
            assert await asyncio.to_thread(gate.left.wait, GUARD)
            assert await broker._threads_settled(GUARD)
            assert delivery.settled  # the extend's end changed nothing
            assert recorder.calls == [("ack", [delivery.id]), ("deliver_end", "ack")]
            assert (await broker.inspect(topic)).in_flight == 0

    asyncio.run(main())


def test_a_close_waits_for_a_cancelled_ack_whose_thread_still_runs(
    backend: Backend, recorder: Recorder
) -> None:
    gate = backend.gate

    async def main() -> None:
        async with backend.opened() as broker:
            delivery = await _one_delivery(broker, _topic())
            await _cancel_inside_the_thread(gate, delivery.ack)
            closing = asyncio.ensure_future(broker.close())
            # A bounded look, not a pace: the close is still waiting for the thread.
            done, _ = await asyncio.wait({closing}, timeout=0.3)
            assert not done
            assert not delivery.settled and "settling" in repr(delivery)
            gate.release.set()
            await asyncio.wait_for(closing, GUARD)
            # When the close returns, the ack has landed, and the hooks were told.
            assert delivery.settled
            assert recorder.calls == [("ack", [delivery.id]), ("deliver_end", "ack")]

    asyncio.run(main())


def test_a_cancelled_ack_that_outlives_its_event_loop_still_settles_the_delivery(
    backend: Backend, recorder: Recorder
) -> None:
    gate = backend.gate
    held: list[tuple[ThreadedAsyncBroker, AsyncDelivery]] = []

    async def cancel() -> None:
        broker = await backend.open()  # closed below, on a loop of its own
        delivery = await _one_delivery(broker, _topic())
        held.append((broker, delivery))
        await _cancel_inside_the_thread(gate, delivery.ack)

    asyncio.run(cancel())  # the event loop is closed; the thread is still held
    ((broker, delivery),) = held
    assert not delivery.settled and "settling" in repr(delivery)
    gate.release.set()
    assert recorder.ended.wait(GUARD)  # told from the thread: there is no loop left
    assert delivery.settled
    assert recorder.calls == [("ack", [delivery.id]), ("deliver_end", "ack")]

    async def close() -> None:
        with pytest.raises(AlreadySettled):
            await delivery.ack()
        await broker.close()

    asyncio.run(close())


def test_a_native_asyncio_backend_cancels_the_settle_itself() -> None:
    """Without a thread, a cancelled settle is truly cancelled: the delivery is
    settleable again at once, and a second ack settles it."""
    GatedAsyncMemory.entered, GatedAsyncMemory.release = asyncio.Event(), asyncio.Event()

    async def main() -> None:
        url = brokerkit.BrokerURL.parse(f"memory://cancelled-settle-{uuid.uuid4().hex}")
        async with GatedAsyncMemory.from_url(url) as broker:
            topic = _topic()
            delivery = await _one_delivery(broker, topic)
            acking = asyncio.ensure_future(delivery.ack())
            await asyncio.wait_for(GatedAsyncMemory.entered.wait(), GUARD)
            assert acking.cancel()
            with pytest.raises(asyncio.CancelledError):
                await acking
            assert not delivery.settled and "unsettled" in repr(delivery)
            GatedAsyncMemory.release.set()
            await delivery.ack()
            assert delivery.settled
            assert (await broker.inspect(topic)).in_flight == 0

    asyncio.run(main())
