"""The loop bridge closed by code that the end of an interrupted ack runs (a settlement
hook, told once the ack its caller gave up on has landed): the close waits for the
other acks still going on, never for the one whose end it runs in (which cannot end
before the close returns)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit._delivery import SETTLING, Delivery
from brokerkit._delivery_async import AsyncDelivery
from brokerkit.aio import LoopBridgeBroker
from brokerkit.backends.memory import AsyncMemoryBroker
from tests.conftest import registered
from tests.interrupting import Gate, watch_the_close

#: Seconds any wait of these tests may take at most: a hang guard, never a pace.
GUARD = 30.0


class GatedAsyncMemoryBroker(AsyncMemoryBroker):
    """The memory backend's asyncio class whose acks each take the next of the test's
    :attr:`gates` (if one is left) and wait there: a seam, the real primitive runs."""

    gates: list[Gate]

    async def _ack(self, deliveries: Sequence[AsyncDelivery]) -> None:
        gates = getattr(self, "gates", [])
        if gates:
            await gates.pop(0).pass_through()
        await super()._ack(deliveries)


class Closer:
    """A plugin that closes the broker from the settlement hook of :attr:`trigger`'s
    ack, and writes down what it saw when that close returned."""

    def __init__(self) -> None:
        self.broker: LoopBridgeBroker | None = None
        self.trigger: Delivery | None = None
        #: deliveries whose state the hook writes down when its close returns
        self.watched: list[Delivery] = []
        self.acked: list[Delivery] = []
        #: whether each of :attr:`watched` was settled when the hook's close returned
        self.settled_when_closed: list[bool] = []
        self.closed = threading.Event()

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        self.acked.extend(deliveries)
        if self.broker is None or self.trigger not in deliveries:
            return
        try:
            self.broker.close()
            self.settled_when_closed = [d.settled for d in self.watched]
        finally:
            self.closed.set()


@pytest.fixture
def closer() -> Iterator[Closer]:
    yield from registered(Closer())


@pytest.fixture
def url() -> str:
    return f"memory://bridge-close-from-end-{uuid.uuid4().hex}"


@pytest.fixture
def broker(url: str) -> Iterator[LoopBridgeBroker]:
    with brokerkit.connect(url):  # a plain memory broker keeps the store alive
        bridge = brokerkit.aio.bridged(GatedAsyncMemoryBroker).from_url(url)
        bridge.inner.gates = []  # type: ignore[attr-defined]
        try:
            yield bridge
        finally:
            for gate in bridge.inner.gates:  # type: ignore[attr-defined]
                gate.open()
            bridge.close()


def _interrupted_ack(
    broker: LoopBridgeBroker, interrupt_when: Callable[[threading.Event], None]
) -> tuple[Delivery, Gate]:
    """A delivery whose ack was interrupted (Ctrl-C) once the loop began it: the ack
    goes on, held at the gate returned."""
    broker.publish("jobs", "x")
    delivery = broker.subscribe("jobs").receive(timeout=0)
    assert delivery is not None
    gate = Gate()
    broker.inner.gates.append(gate)  # type: ignore[attr-defined]
    interrupt_when(gate.entered)
    with pytest.raises(KeyboardInterrupt):
        delivery.ack()
    assert delivery._settled is SETTLING
    return delivery, gate


def test_a_close_from_the_hook_of_an_interrupted_ack_does_not_wait_for_it(
    broker: LoopBridgeBroker,
    closer: Closer,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    delivery, gate = _interrupted_ack(broker, interrupt_when)
    closer.broker, closer.trigger = broker, delivery
    _, results = watch_the_close(broker)
    gate.open()  # the ack lands; its end tells the hooks, one of which closes
    assert closer.closed.wait(GUARD)
    # The close found nothing left to wait for: it did not wait for the end it runs in.
    assert results == [True]
    assert broker.closed and broker._loop.loop.is_closed()
    assert delivery.settled and closer.acked == [delivery]


def test_a_close_from_the_hook_of_an_interrupted_ack_waits_for_the_others(
    broker: LoopBridgeBroker,
    closer: Closer,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    first, first_gate = _interrupted_ack(broker, interrupt_when)
    second, second_gate = _interrupted_ack(broker, interrupt_when)
    closer.broker, closer.trigger, closer.watched = broker, first, [second]
    waiting, results = watch_the_close(broker)
    first_gate.open()  # the first lands; its hook closes, and the close waits ...
    assert waiting.wait(GUARD)
    assert second._settled is SETTLING  # still held at its gate
    second_gate.open()  # ... for the second, which lands, rather than being cut off
    assert closer.closed.wait(GUARD)
    assert results == [True]
    assert closer.settled_when_closed == [True]  # landed before the close returned
    assert first.settled and second.settled
    assert sorted(d.id for d in closer.acked) == sorted([first.id, second.id])


def test_a_close_from_the_hook_while_another_close_waits_for_that_ack_returns(
    broker: LoopBridgeBroker,
    closer: Closer,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    """A close elsewhere came first and waits for the interrupted ack; the ack's hook
    closes too: that close returns at once (the first ends once the hook has), and the
    first close's wait sees the ack end (it once ran out, after SETTLE_WAIT)."""
    delivery, gate = _interrupted_ack(broker, interrupt_when)
    closer.broker, closer.trigger = broker, delivery
    waiting, results = watch_the_close(broker)
    first = threading.Thread(target=broker.close)
    first.start()
    assert waiting.wait(GUARD)  # the first close waits for the ack
    gate.open()  # the ack lands; its end tells the hooks, one of which closes
    assert closer.closed.wait(GUARD)
    first.join(GUARD)
    assert not first.is_alive()
    assert results == [True]
    assert broker.closed and broker._loop.loop.is_closed()
    assert delivery.settled and closer.acked == [delivery]


def test_a_close_from_the_bridge_s_own_loop_raises_at_once_and_leaves_it_open(
    broker: LoopBridgeBroker,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    """On the bridge's loop nothing else runs while the close waits there (the ack
    going on least of all), and a close needs the loop: it raises, as every call from
    there does, without waiting and without closing anything; closed from elsewhere,
    it waits for the ack as ever."""
    delivery, gate = _interrupted_ack(broker, interrupt_when)
    _, results = watch_the_close(broker)

    async def close_there() -> None:
        with pytest.raises(RuntimeError, match="own loop"):
            broker.close()

    asyncio.run_coroutine_threadsafe(close_there(), broker._loop.loop).result(GUARD)
    assert results == []  # it waited for nothing
    assert not broker.closed and delivery._settled is SETTLING
    gate.open()
    broker.close()
    assert results == [True] and delivery.settled
    assert broker._loop.loop.is_closed()
