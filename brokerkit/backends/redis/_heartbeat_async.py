"""Keeps the leases of a live consumer's deliveries alive, in the background."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterable

from brokerkit._delivery_async import AsyncDelivery
from brokerkit._hooks import RELAY
from brokerkit._logging import delivery_fields
from brokerkit.backends.redis._periodic_async import Periodic

log = logging.getLogger("brokerkit.redis")

__all__ = ["LeaseKeeper"]


class LeaseKeeper:
    """Renews every lease a broker holds, every ``interval`` seconds, until stopped.

    A delivery is held from the moment it is fetched (prefetched-but-unstarted
    ones included) until it is settled or handed back, so a long handler is never
    given to a second consumer while its own consumer lives; when the process dies
    the renewals stop, and the lease runs out within one visibility timeout.

    :param renew: called with the held deliveries; renews their leases in as few
        round trips as it can and returns those whose leases had already run out,
        which the keeper stops renewing, logs and reports to the lease-loss hook.
        Errors are logged and retried on the next beat.
    :param interval: seconds between renewals; keep it well under the visibility timeout.
    """

    def __init__(
        self,
        renew: Callable[[list[AsyncDelivery]], Awaitable[list[AsyncDelivery]]],
        interval: float,
        name: str,
    ) -> None:
        self._renew = renew
        self._held: dict[int, AsyncDelivery] = {}
        self._lock = threading.Lock()
        self._beat = Periodic(self._renew_held, interval, name, what="renew leases")

    def hold(self, deliveries: Iterable[AsyncDelivery]) -> None:
        """Start renewing these deliveries' leases (starts the renewals on first use)."""
        with self._lock:
            for delivery in deliveries:
                self._held[id(delivery)] = delivery
        self._beat.start()

    def drop(self, deliveries: Iterable[AsyncDelivery]) -> None:
        """Stop renewing these (they were settled or handed back)."""
        with self._lock:
            for delivery in deliveries:
                self._held.pop(id(delivery), None)

    def held(self) -> list[AsyncDelivery]:
        """The deliveries whose leases are being renewed."""
        with self._lock:
            return [d for d in self._held.values() if not d.settled]

    async def stop(self) -> None:
        """Stop renewing; the held leases then run out on their own."""
        await self._beat.stop()

    async def _renew_held(self) -> None:
        held = self.held()
        if not held:
            return
        lost = await self._renew(held)
        if lost:
            self.drop(lost)
            log.warning(
                "%d lease(s) had run out before they could be renewed; settling them "
                "will raise StaleDelivery",
                len(lost),
                extra=delivery_fields(lost),
            )
            if RELAY.settle:
                RELAY.lease_lost(lost)
