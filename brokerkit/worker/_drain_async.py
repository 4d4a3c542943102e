"""Stopping a worker's run: its handlers fetch no more, their subscriptions close, the
handlers in progress get the grace period, and what is left is handed back.

:func:`drain` is the whole stop of a worker's ``run``, for a run that started and for
one that could not (the handlers subscribed before the error are stopped the same way).
Every wait in it is made in steps of :data:`TICK`, so that ``stop(now=True)`` or a
second signal (``aborting()``) ends it at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from brokerkit._acompat import Waiter, spawn
from brokerkit._logging import log_fields
from brokerkit.worker._runner_async import AsyncRunner

__all__ = ["TICK", "drain"]

log = logging.getLogger("brokerkit.worker")

#: How often the worker looks at stop requests and signals.
TICK = 0.05
#: The longest a drain waits for the handlers' subscriptions to close (each close is
#: bounded by its backend; this only keeps a stop from hanging on a bug).
_CLOSE_WAIT = 60.0


async def drain(
    runners: Sequence[AsyncRunner],
    cut_short: Waiter,
    *,
    grace: float,
    aborting: Callable[[], bool],
    verdict: Callable[[bool], None],
) -> bool:
    """Stop and close ``runners``, giving the handlers in progress ``grace`` seconds;
    whether every handler had finished in time (else their deliveries come back: each
    runner abandons them). That is told to ``verdict`` as soon as it is known, before
    the wait for the slots ending their receives and the hand-backs. ``cut_short`` is
    woken, and ``aborting()`` true, once the wait is to end at once."""
    # Every runner stops fetching first, so that no handler starts a message while
    # another's subscription closes; the closes then run side by side, since each
    # waits for its fetch in progress and may talk to the server (during an outage,
    # up to the backend's reconnect_timeout each).
    for runner in runners:
        runner.stop_fetching()
    closing = [spawn(r.close, f"brokerkit-worker {r.spec.name} closing") for r in runners]
    # Waited for in steps, so that stop(now=True) or a second signal ends the wait
    # at once (a close that hangs, on a server that does not answer, held the stop
    # up to _CLOSE_WAIT): a close task still running then is cancelled (a
    # subscription's closing goes on to its end all the same), a thread left to end.
    await _wait_unless_aborted(lambda: all(b.done for b in closing), cut_short, aborting)
    for background in closing:
        await background.join(0.0)
    deadline = time.monotonic() + grace
    while any(r.busy for r in runners) and not aborting():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await cut_short.wait(min(left, TICK))
    drained = not any(r.busy for r in runners)
    verdict(drained)
    if drained:
        # No handler runs, nor will start: a slot still running is ending its
        # receive, and hands back what that brought before the run returns. Waited
        # for in steps, so that stop(now=True) or a second signal ends the wait at
        # once, as it ends the grace period; a slot task still running then is
        # cancelled (its receive hands back what it brings), a thread left to end.
        await _wait_unless_aborted(lambda: all(r.ended for r in runners), cut_short, aborting)
        for runner in runners:
            await runner.join(0.0)
    else:
        log.warning(
            "worker stopped with handlers still running; their deliveries come back",
            extra=log_fields(),
        )
        for runner in runners:
            await runner.abandon()
    for runner in runners:
        await runner.finish()
    return drained


async def _wait_unless_aborted(
    done: Callable[[], bool], cut_short: Waiter, aborting: Callable[[], bool]
) -> None:
    """Wait until ``done()``, for :data:`_CLOSE_WAIT` seconds at most, in steps of
    :data:`TICK`: ended at once by ``cut_short`` (``aborting()`` then true)."""
    deadline = time.monotonic() + _CLOSE_WAIT
    while not done() and not aborting():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await cut_short.wait(min(left, TICK))
