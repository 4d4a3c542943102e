"""A background thread that does one thing every few seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from brokerkit.exceptions import BrokerError

__all__ = ["Periodic"]

log = logging.getLogger("brokerkit.redis")


class Periodic:
    """Calls ``work()`` every ``interval`` seconds in a daemon thread, from
    :meth:`start` until :meth:`stop`.

    A round that fails is logged and the next round tries again: a server that is
    briefly away, or a bug, never ends the thread for good.

    :param what: what ``work`` does, for the log (``"renew 3 leases"`` reads well).
    """

    def __init__(self, work: Callable[[], None], interval: float, name: str, what: str) -> None:
        self._work = work
        self._interval = interval
        self._name = name
        self._what = what
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread; calling it again, or after :meth:`stop`, does nothing."""
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
                self._work()
            except BrokerError as exc:
                log.warning("could not %s: %s", self._what, exc)
            except Exception:
                log.exception("could not %s", self._what)
