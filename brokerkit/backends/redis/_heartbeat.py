"""Keeps the leases of a live consumer's deliveries alive, in the background."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from brokerkit._delivery import Delivery
from brokerkit.exceptions import BrokerError

__all__ = ["LeaseKeeper"]

log = logging.getLogger("brokerkit.redis")


class LeaseKeeper:
    """Renews every lease a broker holds, every ``interval`` seconds, until stopped.

    A delivery is held from the moment it is fetched (prefetched-but-unstarted
    ones included) until it is settled or handed back, so a long handler is never
    given to a second consumer while its own consumer lives; when the process dies
    the renewals stop, and the lease runs out within one visibility timeout.

    :param renew: called with the held deliveries; renews their leases in as few
        round trips as it can. Errors are logged and retried on the next beat.
    :param interval: seconds between renewals; keep it well under the visibility timeout.
    """

    def __init__(self, renew: Callable[[list[Delivery]], None], interval: float, name: str) -> None:
        self._renew = renew
        self._interval = interval
        self._held: dict[int, Delivery] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = name

    def hold(self, deliveries: Iterable[Delivery]) -> None:
        """Start renewing these deliveries' leases (starts the thread on first use)."""
        with self._lock:
            for delivery in deliveries:
                self._held[id(delivery)] = delivery
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def drop(self, deliveries: Iterable[Delivery]) -> None:
        """Stop renewing these (they were settled or handed back)."""
        with self._lock:
            for delivery in deliveries:
                self._held.pop(id(delivery), None)

    def held(self) -> list[Delivery]:
        """The deliveries whose leases are being renewed."""
        with self._lock:
            return [d for d in self._held.values() if not d.settled]

    def stop(self) -> None:
        """Stop renewing; the held leases then run out on their own."""
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            held = self.held()
            if not held:
                continue
            try:
                self._renew(held)
            except BrokerError as exc:
                log.warning("could not renew %d lease(s): %s", len(held), exc)
            except Exception:  # a bug must not silently end renewals for good
                log.exception("renewing %d lease(s) failed", len(held))
