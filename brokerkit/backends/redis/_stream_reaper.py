"""Dead-letters poison entries of a stream that nobody is reading.

Consumers reclaim idle entries as they fetch, and dead-letter those past
``max_deliveries`` then. An entry whose last allowed lease ran out while no
consumer of its group fetches would wait for the next fetch; the reaper, a
background thread of a broker with subscriptions, moves it to the dead-letter
topic within about one visibility timeout instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from brokerkit.exceptions import BrokerError

__all__ = ["Reaper"]

log = logging.getLogger("brokerkit.redis")


class Reaper:
    """Calls ``reap()`` every ``interval`` seconds in a daemon thread until stopped;
    errors are logged and the next round tries again."""

    def __init__(self, reap: Callable[[], None], interval: float, name: str) -> None:
        self._reap = reap
        self._interval = interval
        self._name = name
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread (once)."""
        with self._lock:
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for the round in progress."""
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._reap()
            except BrokerError as exc:
                log.warning("could not dead-letter expired poison entries: %s", exc)
            except Exception:  # a bug must not end the thread: the next round tries again
                log.exception("could not dead-letter expired poison entries")
