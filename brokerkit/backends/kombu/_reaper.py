"""The background thread that keeps the visibility timeout on AMQP.

AMQP itself has no lease: a delivery stays with the channel that received it until
that channel settles it or closes. brokerkit promises more, so each broker runs one
reaper thread that hands back (or, on the last allowed attempt, dead-letters) every
delivery left unsettled past the visibility timeout. A consumer whose *handler* hangs
loses its deliveries on time; a process that is frozen whole (SIGSTOP, a debugger)
keeps them until its TCP connection dies or RabbitMQ's ``consumer_timeout`` fires.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable

from brokerkit._logging import log_fields
from brokerkit.backends.kombu._link import Link

__all__ = ["Reaper", "release"]

log = logging.getLogger("brokerkit.kombu")

#: The longest a close waits for the reaper's sweep under way.
_REAPER_WAIT = 10.0


class Reaper:
    """Calls ``sweep()`` every ``interval`` seconds on a daemon thread until stopped.

    ``sweep`` is a bound method, held weakly: a broker dropped unclosed is not kept
    alive by its own reaper, and the thread ends once the broker is gone.
    """

    def __init__(self, sweep: Callable[[], None], interval: float, name: str) -> None:
        self._sweep = weakref.WeakMethod(sweep)
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            sweep = self._sweep()
            if sweep is None:
                return  # its broker is gone
            try:
                sweep()
            except Exception as exc:  # keep sweeping: the next round may reconnect
                if not self._stopped.is_set():
                    log.warning("the lease reaper could not sweep: %s", exc, extra=log_fields())
            # not held while waiting: the broker may be dropped meanwhile
            del sweep

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread and wait (up to ``timeout`` seconds) for a sweep under way
        to finish."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


def release(reaper: Reaper, links: Iterable[Link]) -> None:
    """Stop the reaper and close the connections: at a broker's close, or when it was
    dropped unclosed (the garbage collector calls this: nothing here may hold it)."""
    reaper.stop(timeout=0)
    try:
        for link in list(links):
            try:
                link.close()
            except Exception as exc:  # the garbage collector has nobody to raise to
                log.warning("could not close %s: %r", link.url, exc, extra=log_fields())
    finally:
        reaper.stop(timeout=_REAPER_WAIT)
