"""An asyncio Redis broker (redis+list, redis+stream, redis+pubsub) used from another
event loop than the one it first ran on (review 29).

Before, such a call failed with redis-py's raw RuntimeError: "got Future attached to a
different loop" from a second loop running at the same time, "Event loop is closed"
after the first loop ended (a second ``asyncio.run()``, a test framework's new loop per
test). Now a broker whose loop is closed moves to the loop that calls it (connections
opened again, lease renewals running there), and a call from a second loop while the
first is open is refused with ``Unsupported`` before anything is done; a close from
there is carried out on the first loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

import brokerkit.aio
from brokerkit.exceptions import Unsupported
from tests.redis_server import RedisServer

#: Seconds any wait here may take at most: a hang guard, never a pace.
GUARD = 20.0

SCHEMES = ("redis+list", "redis+stream", "redis+pubsub")

_T = TypeVar("_T")


class FirstLoop:
    """A thread running an event loop of its own, where the broker is made and first
    used; :meth:`run` runs a coroutine there, :meth:`end` ends the loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(GUARD)

    def end(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(GUARD)
        assert not self._thread.is_alive()
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        yield redis_server


@pytest.fixture
def connect(server: RedisServer, prefix: str) -> Any:
    async def make(scheme: str) -> brokerkit.aio.AsyncBroker:
        return await brokerkit.aio.connect(server.url(scheme), prefix=prefix)

    return make


def _group(broker: brokerkit.aio.AsyncBroker) -> str | None:
    return None if "pubsub" in broker.url.scheme else "g"  # pub/sub has no groups


async def _round_trip(broker: brokerkit.aio.AsyncBroker, body: str) -> None:
    """Subscribe, publish ``body``, receive and ack it, on the running loop."""
    subscription = await broker.subscribe("jobs", group=_group(broker))
    try:
        await broker.publish("jobs", body)
        delivery = await subscription.receive(timeout=GUARD)
        assert delivery is not None and delivery.body == body
        await delivery.ack()
    finally:
        await subscription.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_broker_whose_loop_ended_works_on_the_next(scheme: str, connect: Any) -> None:
    broker = asyncio.run(connect(scheme))
    asyncio.run(_round_trip(broker, "on the first loop"))
    asyncio.run(_round_trip(broker, "on the second loop"))
    asyncio.run(_round_trip(broker, "on the third loop"))
    asyncio.run(broker.close())
    assert broker.closed


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_a_lease_taken_on_an_ended_loop_is_renewed_and_settled_on_the_next(
    scheme: str, connect: Any
) -> None:
    broker = asyncio.run(connect(scheme))

    async def take() -> Any:
        subscription = await broker.subscribe("jobs", group=_group(broker))
        await broker.publish("jobs", "held")
        delivery = await subscription.receive(timeout=GUARD)
        assert delivery is not None
        return delivery  # unsettled: its lease is being renewed when the loop ends

    delivery = asyncio.run(take())

    async def settle() -> None:
        await broker.publish("jobs", "next")
        keeper: Any = broker._keeper
        # the renewals run on this loop now, not on the one that ended
        task = keeper._beat._background._task
        assert task.get_loop() is asyncio.get_running_loop() and not task.done()
        await delivery.ack()
        info = await broker.inspect("jobs")
        assert info.in_flight == 0  # (a stream counts the acked entry in its length)
        await broker.close()

    asyncio.run(settle())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_close_after_the_first_loop_ended(scheme: str, connect: Any) -> None:
    loop = FirstLoop()
    try:

        async def use() -> brokerkit.aio.AsyncBroker:
            broker: brokerkit.aio.AsyncBroker = await connect(scheme)
            await broker.publish("jobs", "from the first loop")
            return broker

        broker = loop.run(use())
    finally:
        loop.end()
    asyncio.run(asyncio.wait_for(broker.close(), GUARD))
    assert broker.closed


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_call_from_a_second_live_loop_is_refused_and_does_nothing(
    scheme: str, connect: Any
) -> None:
    loop = FirstLoop()
    try:

        async def use() -> tuple[brokerkit.aio.AsyncBroker, brokerkit.aio.AsyncSubscription]:
            broker = await connect(scheme)
            subscription = await broker.subscribe("jobs", group=_group(broker))
            await broker.publish("jobs", "from the first loop")
            return broker, subscription

        broker, subscription = loop.run(use())

        async def elsewhere() -> None:
            with pytest.raises(Unsupported, match="open one broker per event loop"):
                await broker.publish("jobs", "from the second loop")
            with pytest.raises(Unsupported, match="other than the one it belongs to"):
                await broker.inspect("jobs")

        asyncio.run(asyncio.wait_for(elsewhere(), GUARD))

        async def at_home() -> list[str]:
            await broker.publish("jobs", "again from the first loop")
            bodies = []
            for _ in range(2):
                delivery = await subscription.receive(timeout=GUARD)
                assert delivery is not None
                bodies.append(str(delivery.body))
                await delivery.ack()
            assert await subscription.receive(timeout=0.2) is None  # nothing more
            return bodies

        assert loop.run(at_home()) == ["from the first loop", "again from the first loop"]

        # a close from the second loop is carried out on the first, which goes on
        asyncio.run(asyncio.wait_for(broker.close(), GUARD))
        assert broker.closed and subscription.closed
        pool = broker._client.connection_pool  # type: ignore[attr-defined]
        assert not any(c.is_connected for c in pool._available_connections)
        assert loop.run(asyncio.sleep(0, "still running")) == "still running"
    finally:
        loop.end()
