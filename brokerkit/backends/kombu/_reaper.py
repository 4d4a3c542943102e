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
from collections.abc import Callable

from brokerkit._logging import log_fields

__all__ = ["Reaper"]

log = logging.getLogger("brokerkit.kombu")


class Reaper:
    """Calls ``sweep()`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, sweep: Callable[[], None], interval: float, name: str) -> None:
        self._sweep = sweep
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._sweep()
            except Exception as exc:  # keep sweeping: the next round may reconnect
                log.warning("the lease reaper could not sweep: %s", exc, extra=log_fields())

    def stop(self) -> None:
        """Stop the thread and wait for a sweep under way to finish."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
