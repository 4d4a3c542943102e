"""The thread adapter's cancelled ack whose worker thread ends it while the caller's
event loop runs its last turn: the loop has stopped (``asyncio.run`` returning) and
runs nothing scheduled after that turn began, then is closed. The end handed to it
then would never run: the delivery is settled, and its hooks told, all the same,
exactly once (in the worker thread, the loop no longer running)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest

import brokerkit
from brokerkit._delivery import Delivery
from brokerkit._delivery_async import SETTLING
from brokerkit.aio import AsyncDelivery
from brokerkit.aio._threaded import ThreadedAsyncBroker, threaded
from brokerkit.backends.memory import MemoryBroker
from tests.conftest import registered

#: Seconds any wait of these tests may take at most: a hang guard, never a pace.
GUARD = 30.0


class Gate:
    """Holds the first ack that reaches it (in its worker thread) until the test lets
    it go; later ones pass. :attr:`thread` is the worker thread it held."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.thread: threading.Thread | None = None
        self._armed = True
        self._lock = threading.Lock()

    def hold(self) -> None:
        with self._lock:
            held, self._armed = self._armed, False
        if held:
            self.thread = threading.current_thread()
            self.entered.set()
            assert self.release.wait(GUARD), "the test never let the ack go"


class GatedMemory(MemoryBroker):
    """The memory backend's sync broker, its first ack held at the class's gate."""

    gate: ClassVar[Gate]

    def _ack(self, deliveries: Sequence[Delivery]) -> None:
        self.gate.hold()
        super()._ack(deliveries)


class Recorder:
    """A plugin that writes down the settlement hooks; :attr:`ended` is set when a
    delivery's hooks end."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.ended = threading.Event()

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any, scope: dict[str, Any]) -> None:
        pass  # (implemented so that the delivery hooks run, and end)

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str) -> None:
        self.calls.append(("deliver_end", outcome))
        self.ended.set()

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        self.calls.append(("ack", [d.id for d in deliveries]))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    yield from registered(Recorder())


@pytest.fixture
def gate() -> Iterator[Gate]:
    made = GatedMemory.gate = Gate()
    try:
        yield made
    finally:
        made.release.set()  # never leave a thread held, whatever failed


def _handed_to(loop: asyncio.AbstractEventLoop, gate: Gate) -> threading.Event:
    """An event set once the thread the gate held has handed the adapter's work (a
    callable of brokerkit's) to ``loop``."""
    handed = threading.Event()
    schedule = loop.call_soon_threadsafe

    def watched(callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        handle = schedule(callback, *args, context=context)
        ours = getattr(callback, "__module__", None) or ""
        if threading.current_thread() is gate.thread and ours.startswith("brokerkit"):
            handed.set()
        return handle

    loop.call_soon_threadsafe = watched  # type: ignore[method-assign, assignment]
    return handed


async def _cancelled_ack(gate: Gate) -> tuple[ThreadedAsyncBroker, AsyncDelivery]:
    """A threaded memory broker and a delivery of it whose ack was cancelled while its
    worker thread is inside the primitive, held at ``gate``: the ack goes on."""
    broker = await threaded(GatedMemory).open(
        brokerkit.BrokerURL.parse(f"memory://last-turn-{uuid.uuid4().hex}")
    )
    subscription = await broker.subscribe("jobs")
    await broker.publish("jobs", b"x")
    delivery = await subscription.receive(timeout=10)
    assert delivery is not None
    acking = asyncio.ensure_future(delivery.ack())
    assert await asyncio.to_thread(gate.entered.wait, GUARD)
    assert acking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await acking
    assert delivery._settled is SETTLING
    return broker, delivery


def test_a_cancelled_ack_that_ends_in_the_last_turn_of_asyncio_run_still_settles(
    gate: Gate, recorder: Recorder
) -> None:
    held: list[tuple[ThreadedAsyncBroker, AsyncDelivery]] = []
    handed: list[threading.Event] = []
    #: whether the end was handed to the loop during its last turn
    handed_in_the_last_turn: list[bool] = []

    def last_turn(_: object) -> None:
        # Run in the loop's last turn: the task asyncio.run waits for last has ended,
        # and the loop stops after this turn. The ack lands now, and its end is handed
        # to the loop before the turn is over.
        gate.release.set()
        handed_in_the_last_turn.append(handed[0].wait(GUARD))

    def tasks(loop: asyncio.AbstractEventLoop, coroutine: Any, **options: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coroutine, loop=loop, **options)
        if coroutine.__qualname__.endswith("shutdown_default_executor"):  # the last
            task.add_done_callback(last_turn)
        return task

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handed.append(_handed_to(loop, gate))
        loop.set_task_factory(tasks)
        held.append(await _cancelled_ack(gate))

    asyncio.run(main())
    assert handed_in_the_last_turn == [True]
    ((broker, delivery),) = held

    async def close() -> None:
        await broker.close()  # waits for the ack's end (SETTLE_WAIT at most)

    asyncio.run(close())
    # Settled when the close returned, and the hooks told once.
    assert delivery.settled
    assert recorder.calls == [("ack", [delivery.id]), ("deliver_end", "ack")]


def test_a_cancelled_ack_that_ends_as_its_loop_stops_settles_once_if_the_loop_runs_again(
    gate: Gate, recorder: Recorder
) -> None:
    """The loop stops after the turn in which the end was handed to it, and is run
    again later: the end runs once, in the worker thread (which saw the loop stop),
    not again when the loop runs what was left scheduled."""
    loop = asyncio.new_event_loop()
    try:
        broker, delivery = loop.run_until_complete(_cancelled_ack(gate))
        handed = _handed_to(loop, gate)
        handed_in_the_last_turn: list[bool] = []

        def last_turn() -> None:
            loop.stop()
            gate.release.set()
            handed_in_the_last_turn.append(handed.wait(GUARD))

        loop.call_soon(last_turn)
        loop.run_forever()
        assert handed_in_the_last_turn == [True]
        assert recorder.ended.wait(GUARD)  # the loop stopped: ended in the worker thread
        assert delivery.settled
        loop.run_until_complete(broker.close())  # runs what was left scheduled
        assert recorder.calls == [("ack", [delivery.id]), ("deliver_end", "ack")]
    finally:
        gate.release.set()
        loop.close()


def test_a_cancelled_ack_whose_call_had_ended_settles_on_the_loop_at_once(
    recorder: Recorder,
) -> None:
    """The worker thread ended the ack before its cancelled caller looked (the loop was
    busy meanwhile): its end runs there and then, on the loop, which goes on (it once
    waited, on the loop's own thread, for the loop to begin it: for ever)."""
    outcome: list[bool] = []
    ids: list[str] = []

    async def main() -> None:
        broker = await threaded(MemoryBroker).open(
            brokerkit.BrokerURL.parse(f"memory://ended-{uuid.uuid4().hex}")
        )
        calls: list[concurrent.futures.Future[Any]] = []
        submit = broker._submit

        def kept(function: Any, *args: Any) -> concurrent.futures.Future[Any]:
            calls.append(submit(function, *args))
            return calls[-1]

        broker._submit = kept  # type: ignore[method-assign]
        subscription = await broker.subscribe("jobs")
        await broker.publish("jobs", b"x")
        delivery = await subscription.receive(timeout=10)
        assert delivery is not None
        calls.clear()
        acking = asyncio.ensure_future(delivery.ack())
        await asyncio.sleep(0)  # the ack's task submits its call
        # The loop's own thread waits (the loop runs nothing meanwhile) for the call.
        assert not concurrent.futures.wait(calls, GUARD).not_done
        acking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await acking
        outcome.append(delivery.settled)
        ids.append(delivery.id)
        await broker.close()

    runner = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    runner.start()
    runner.join(GUARD)
    assert not runner.is_alive(), "the event loop hung in the cancelled ack's end"
    assert outcome == [True]
    assert recorder.calls == [("ack", ids), ("deliver_end", "ack")]
