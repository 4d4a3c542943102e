"""Acks and nacks that go on after their caller gave up on them, shared by the two
adapters between the sync and asyncio APIs: under the thread adapter
(:mod:`._threaded`) a cancelled task whose ack runs on in a worker thread, under the
loop bridge (:mod:`._bridge`) an interrupted thread whose ack runs on on the event
loop. Neither can be stopped halfway without leaving unknown whether the server
applied it, so each goes on, and its deliveries are settled or unsettled by how it
ended (see ``goes_on`` in :mod:`brokerkit._settling_async`); a close waits for them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from brokerkit._logging import delivery_fields
from brokerkit._settling_async import Ending
from brokerkit.exceptions import StaleDelivery

__all__ = ["GoingOn", "outer_stale"]

log = logging.getLogger("brokerkit")


def outer_stale(exc: StaleDelivery, deliveries: Sequence[Any]) -> StaleDelivery:
    """``exc``, raised for the deliveries the adapter wraps (the receipts of
    ``deliveries``), naming the caller's ``deliveries`` instead, in the backend's words
    (why they were stale: a lost connection rather than an expired lease)."""
    stale = {id(d) for d in exc.deliveries}
    outer = StaleDelivery([d for d in deliveries if id(d.receipt) in stale])
    outer.args = exc.args
    return outer


class GoingOn:
    """The acks and nacks an adapter's callers gave up on while they went on."""

    def __init__(self, where: str) -> None:
        #: where they go on, for the log line of one that failed ("in its worker thread")
        self._where = where
        self._lock = threading.Lock()
        #: one for each, done once its deliveries were settled or unsettled, with the
        #: thread that settles or unsettles them (None until it starts)
        self._ends: dict[concurrent.futures.Future[None], int | None] = {}

    def follow(
        self,
        call: concurrent.futures.Future[Any],
        deliveries: Sequence[Any],
        ending: Ending,
        run_end: Callable[[Callable[[], None]], None],
    ) -> None:
        """Once ``call`` (an ack or nack of ``deliveries`` whose caller gave up) ends,
        settle or unsettle them by how it ended (``ending``, given what it raised),
        the hooks told as for a call not given up on; ``run_end`` runs that where it
        must run (on the caller's event loop, in a thread of its own) and is called in
        whichever thread ended ``call``."""
        ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            self._ends[ended] = None

        def end() -> None:
            with self._lock:
                self._ends[ended] = threading.get_ident()
            error = concurrent.futures.CancelledError() if call.cancelled() else call.exception()
            if isinstance(error, StaleDelivery):
                error = outer_stale(error, deliveries)
            elif error is not None:
                log.info(
                    "an ack or nack whose caller gave up on it failed %s (%s: %s): "
                    "message %s unsettled again",
                    self._where,
                    type(error).__name__,
                    error,
                    ", ".join(d.id for d in deliveries),
                    extra=delivery_fields(deliveries),
                )
            try:
                ending(error)
            finally:
                with self._lock:
                    self._ends.pop(ended, None)
                ended.set_result(None)

        call.add_done_callback(lambda _: run_end(end))

    def ending_here(self) -> bool:
        """Whether this thread is settling or unsettling the deliveries of one."""
        here = threading.get_ident()
        with self._lock:
            return here in self._ends.values()

    def wait(self, timeout: float) -> bool:
        """Wait (``timeout`` seconds at most; blocking) until every one followed so far
        has ended and settled or unsettled its deliveries; whether they all have.

        But for those this thread is settling or unsettling the deliveries of: it waits
        in their end (a settlement hook that closes the broker), which cannot end
        before the wait does."""
        here = threading.get_ident()
        with self._lock:
            ends = [ended for ended, thread in self._ends.items() if thread != here]
        if not ends:
            return True
        _, pending = concurrent.futures.wait(ends, timeout)
        return not pending
