"""The thread adapter over a sync backend whose primitive raises StopIteration (a
``next()`` on an empty iterator, say): the awaiting call raises a RuntimeError from it,
as a coroutine's StopIteration becomes. Before, asyncio refused the StopIteration as the
future's exception (the loop logged "StopIteration interacts badly with generators"),
and the publish, receive, ack or open waited for ever."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any, ClassVar, TypeVar

import pytest

from brokerkit.aio._threaded import threaded
from brokerkit.backends.memory import MemoryBroker

#: Seconds any wait here may take at most: a hang guard, never a pace.
GUARD = 20.0

_T = TypeVar("_T")


class Stopping(MemoryBroker):
    """A memory broker whose primitives named in :attr:`failing` raise StopIteration
    (the next call of each, once)."""

    failing: ClassVar[set[str]] = set()

    def _stop(self, name: str) -> None:
        if name in self.failing:
            self.failing.discard(name)
            raise StopIteration(f"nothing left in {name}")

    @classmethod
    def from_url(cls, url: Any, **options: Any) -> Any:
        if "from_url" in cls.failing:
            cls.failing.discard("from_url")
            next(iter(()))  # a bare StopIteration
        return super().from_url(url, **options)

    def _publish(self, topic: str, messages: Any) -> None:
        self._stop("publish")
        super()._publish(topic, messages)

    def _fetch(self, subscription: Any, max_messages: int, timeout: float) -> Any:
        self._stop("fetch")
        return super()._fetch(subscription, max_messages, timeout)

    def _ack(self, deliveries: Any) -> None:
        self._stop("ack")
        super()._ack(deliveries)

    def _inspect(self, topic: str) -> Any:
        self._stop("inspect")
        return super()._inspect(topic)


def _url() -> str:
    return f"memory://aio-review32-stop-{uuid.uuid4().hex}"


async def _guarded(call: Awaitable[_T]) -> _T:
    return await asyncio.wait_for(call, GUARD)


@pytest.fixture(autouse=True)
def _none_failing() -> None:
    Stopping.failing = set()


def test_an_open_whose_backend_raises_stop_iteration_raises_runtime_error() -> None:
    async def main() -> None:
        Stopping.failing = {"from_url"}
        with pytest.raises(RuntimeError, match=r"from_url raised StopIteration$") as caught:
            await _guarded(threaded(Stopping).open(_url()))
        assert isinstance(caught.value.__cause__, StopIteration)

    asyncio.run(main())


@pytest.mark.parametrize("primitive", ["publish", "inspect"])
def test_a_call_whose_primitive_raises_stop_iteration_raises_runtime_error(
    primitive: str,
) -> None:
    async def main() -> None:
        broker = await _guarded(threaded(Stopping).open(_url()))
        try:
            Stopping.failing = {primitive}
            message = f"_{primitive} raised StopIteration: nothing left in {primitive}"
            call = broker.publish("t", "x") if primitive == "publish" else broker.inspect("t")
            with pytest.raises(RuntimeError, match=message) as caught:
                await _guarded(call)
            assert isinstance(caught.value.__cause__, StopIteration)
            await _guarded(broker.publish("t", "y"))  # the broker works on
            assert (await _guarded(broker.inspect("t"))).length == 1
        finally:
            await _guarded(broker.close())

    asyncio.run(main())


def test_a_receive_and_an_ack_whose_primitives_raise_stop_iteration_fail_and_work_again() -> None:
    async def main() -> None:
        broker = await _guarded(threaded(Stopping).open(_url()))
        try:
            await _guarded(broker.publish("t", "x"))
            subscription = await _guarded(broker.subscribe("t", group="g"))
            Stopping.failing = {"fetch"}
            with pytest.raises(RuntimeError, match="_fetch raised StopIteration"):
                await _guarded(subscription.receive(GUARD))
            delivery = await _guarded(subscription.receive(GUARD))
            assert delivery is not None and delivery.body == "x"
            Stopping.failing = {"ack"}
            with pytest.raises(RuntimeError, match="_ack raised StopIteration"):
                await _guarded(delivery.ack())
            await _guarded(delivery.ack())  # settleable again, as after any failed ack
            assert (await _guarded(broker.inspect("t"))).in_flight == 0
            await _guarded(subscription.close())
        finally:
            await _guarded(broker.close())

    asyncio.run(main())
