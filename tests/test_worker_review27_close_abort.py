"""``stop(now=True)`` ends the drain's wait for the subscriptions to close (review 27,
item 3). A drain first closes the handlers' subscriptions (each close hands back what
waited for a slot) and waited up to a minute for them, deaf to a hard stop: a close
that hangs (a server that does not answer) held ``run()`` that long after
``stop(now=True)`` or a second Ctrl-C, which docs/workers.md says "ends the wait at
once". The close is held here at a seam of the memory backend (its unsubscribe, the
last step of a subscription's close) until the test lets it go; nothing sleeps."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import brokerkit
import brokerkit.aio
from brokerkit._delivery import Delivery
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._subscription import Subscription
from brokerkit._subscription_async import AsyncSubscription
from brokerkit.backends.memory import AsyncMemoryBroker, MemoryBroker
from tests.interrupting import Gate
from tests.waiting import wait_until

#: The hang guard of the held close: longer than the drain waited for a close before
#: the fix (the drain's _CLOSE_WAIT, in brokerkit/worker/_drain_async.py, 60 s) and
#: than any wait of the tests, so that only the test's release ends it.
GUARD = 120.0
#: How long the tests give run() to return after stop(now=True): a bound on a failure,
#: well short of the minute the drain waited before the fix.
WITHIN = 20.0


class HeldCloseMemory(MemoryBroker):
    """The memory backend whose first subscription close is held in its unsubscribe
    until :attr:`release` (a seam: the real unsubscribe then runs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.release = threading.Event()

    def _unsubscribe(self, subscription: Subscription, unreturned: list[Delivery]) -> None:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(GUARD)
        super()._unsubscribe(subscription, unreturned)


class HeldCloseAsyncMemory(AsyncMemoryBroker):
    """The asyncio memory backend whose first subscription close passes the test's
    :class:`Gate` (held, off the event loop, until the gate opens)."""

    gate: Gate

    async def _unsubscribe(
        self, subscription: AsyncSubscription, unreturned: list[AsyncDelivery]
    ) -> None:
        await self.gate.pass_through()
        await super()._unsubscribe(subscription, unreturned)


def test_stop_now_ends_the_wait_for_a_subscription_closing() -> None:
    url = f"memory://review27-close-abort-{uuid.uuid4().hex}"
    with HeldCloseMemory.from_url(url) as broker:
        worker = brokerkit.Worker(broker, grace=30)
        calls: list[Any] = []

        @worker.handler("jobs")
        def job(body: Any) -> None:
            calls.append(body)

        run = threading.Thread(target=worker.run, name="test worker", daemon=True)
        run.start()
        try:
            assert worker.wait_ready(WITHIN)
            worker.stop()
            assert broker.entered.wait(WITHIN), "the drain never closed the subscription"
            worker.stop(now=True)
            wait_until(lambda: not run.is_alive(), "run() to return after stop(now=True)", WITHIN)
            assert worker.drained  # no handler was running
        finally:
            broker.release.set()
            run.join(GUARD)
        assert calls == []


def test_the_asyncio_workers_stop_now_ends_the_wait_for_a_subscription_closing() -> None:
    gate = Gate()

    async def main() -> brokerkit.aio.Worker:
        url = f"memory://review27-close-abort-aio-{uuid.uuid4().hex}"
        broker = HeldCloseAsyncMemory.from_url(url)
        broker.gate = gate
        async with broker:
            worker = brokerkit.aio.Worker(broker, grace=30)

            @worker.handler("jobs")
            async def job(body: Any) -> None:
                raise AssertionError("nothing was published")

            async def stop_now_once_closing() -> None:
                assert await asyncio.to_thread(gate.entered.wait, WITHIN)
                worker.stop(now=True)

            try:
                async with worker.running():
                    aborting = asyncio.create_task(stop_now_once_closing())
                await aborting
            finally:
                gate.open()  # the close goes on, for the broker's close to end
            return worker

    try:
        worker = asyncio.run(asyncio.wait_for(main(), WITHIN))
    finally:
        gate.open()
    assert worker.drained
