"""NATS, asyncio: the renewals of a broker closed while its event loop was stopped end
once that loop runs again (review 28).

A broker closed from elsewhere while the loop that owns it is stopped cannot cancel
the renewals' task (it is that loop's): the close let go of it, and the renewals
were to notice the close at their next round. Since an idle broker's renewals wait,
untimed, for a lease to come, there was no next round: run again, the loop kept the
task waiting forever. Now the close wakes that wait, and the renewals end.

A real loop, in a thread of the test's own, is stopped and run again.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import brokerkit.aio
from tests.waiting import wait_until

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0

_T = TypeVar("_T")


class OwnLoop:
    """An event loop run in a thread of its own: stopped, and run again."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.loop.run_forever)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        async def guarded() -> _T:
            return await asyncio.wait_for(work, GUARD)

        return asyncio.run_coroutine_threadsafe(guarded(), self.loop).result(GUARD)

    def stop(self) -> None:
        assert self._thread is not None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(GUARD)
        assert not self._thread.is_alive()

    def end(self) -> None:
        """Cancel what the loop still runs (the dropped connection's tasks of nats-py,
        and the renewals if they did not end), then stop and close it."""
        if self._thread is None or not self._thread.is_alive():
            self.start()

        async def cancel_the_rest() -> None:
            here = asyncio.current_task()
            rest = [task for task in asyncio.all_tasks() if task is not here]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:  # (not wrapped in a task that it would cancel)
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), self.loop).result(GUARD)
        finally:
            self.stop()
            self.loop.close()


def test_the_renewals_of_a_broker_closed_while_its_loop_was_stopped_end_when_it_runs(
    nats_url: str, nats_prefix: str
) -> None:
    own = OwnLoop()
    try:

        async def hold_one() -> brokerkit.aio.AsyncBroker:
            broker = await brokerkit.aio.connect(nats_url, prefix=nats_prefix, visibility_timeout=1)
            subscription = await broker.subscribe("jobs", group="g")
            await broker.publish("jobs", "one")
            delivery = await subscription.receive(timeout=GUARD)
            assert delivery is not None
            await delivery.ack()  # (the renewals run from the lease on; none is held now)
            return broker

        broker = own.run(hold_one())
        renewer = broker._renewer  # type: ignore[attr-defined]
        leases = broker._leases  # type: ignore[attr-defined]
        assert renewer is not None
        # The renewals wait, untimed, for a lease to come (idle).
        wait_until(
            lambda: leases._shorter is not None and math.isinf(leases._basis),
            "the renewals to wait idle",
            GUARD,
        )
        own.stop()
        asyncio.run(asyncio.wait_for(broker.close(), GUARD))
        assert not renewer.done()  # (its loop is stopped: it could not run)
        own.start()
        wait_until(renewer.done, "the renewals to end once their loop runs again", GUARD)
        assert not renewer.cancelled() and renewer.exception() is None
    finally:
        own.end()
