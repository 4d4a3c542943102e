"""Keeps the leases of a live consumer's deliveries alive, in the background."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable

from brokerkit._delivery_async import AsyncDelivery
from brokerkit._hooks import report_renewal_losses
from brokerkit.backends.redis._periodic_async import Periodic

log = logging.getLogger("brokerkit.redis")

__all__ = ["RENEW_CHUNK", "LeaseKeeper"]

#: A renewal call carries at most this many deliveries. Measured on a private Redis
#: 7.0 with 10,000 deliveries held in one call: redis+stream's renewal script took
#: 78 ms of server time (about 8 us an entry), redis+list's 21 ms (2 us a lease);
#: Redis serves no other client meanwhile. 250 keeps a call near 2 ms on either,
#: and a round of 10,000 costs 40 round trips, which a beat every few seconds affords.
RENEW_CHUNK = 250


class LeaseKeeper:
    """Renews every lease a broker holds, every ``interval`` seconds, until stopped.

    A delivery is held from the moment it is fetched (prefetched-but-unstarted
    ones included) until it is settled or handed back, so a long handler is never
    given to a second consumer while its own consumer lives; when the process dies
    the renewals stop, and the lease runs out within one visibility timeout.

    The keeper never keeps a delivery alive itself: one that nothing else references
    any more (the application let it go unsettled: a handler's exception ended its
    loop, it dropped what ``receive`` gave it) is not renewed from the first beat after
    it was collected, so its lease runs out and the message comes back, as an
    unsettled delivery does (see ``docs/concepts.md``). A subscription's buffer holds
    its prefetched deliveries, and the code running a delivery holds that one: those
    are renewed. The hot path stays a dict's: :meth:`hold` keeps the deliveries
    themselves, and each beat moves those it finds there to weak references (no
    callbacks: a dead one is pruned by the next beat), so that a delivery settled
    within a beat of its fetch, the usual one, never costs a weak reference.

    :param renew: called with the held deliveries; renews their leases in as few
        round trips as it can and returns those whose leases had already run out,
        which the keeper stops renewing, logs and reports to the lease-loss hook.
        Errors are logged and retried on the next beat.
        It is given at most ``chunk`` deliveries per call, one call after another,
        so that no single call holds the server for long however many are held.
    :param interval: seconds between renewals; keep it well under the visibility timeout.
    :param chunk: the most deliveries one ``renew`` call is given.
    """

    def __init__(
        self,
        renew: Callable[[list[AsyncDelivery]], Awaitable[list[AsyncDelivery]]],
        interval: float,
        name: str,
        chunk: int = RENEW_CHUNK,
    ) -> None:
        self._renew = renew
        self._chunk = chunk
        # Held since the last beat, keyed by the deliveries themselves: a delivery
        # hashes and compares by identity (it defines neither __eq__ nor __hash__),
        # which costs half as much as keying by id() and holds two deliveries of one
        # message apart all the same.
        self._held: dict[AsyncDelivery, None] = {}
        # Held across a beat, weakly, by id(): a live delivery's id is its own; an
        # entry whose delivery died (its id free for another) is pruned by the next
        # beat, or replaced when a new delivery with that id is moved here.
        self._weak: dict[int, weakref.ref[AsyncDelivery]] = {}
        self._lock = threading.Lock()
        self._beat = Periodic(self._renew_held, interval, name, what="renew leases")

    def hold(self, deliveries: Iterable[AsyncDelivery]) -> None:
        """Start renewing these deliveries' leases (starts the renewals on first use)."""
        with self._lock:
            self._held.update(dict.fromkeys(deliveries))
        self._beat.start()

    def drop(self, deliveries: Iterable[AsyncDelivery]) -> None:
        """Stop renewing these (they were settled or handed back)."""
        with self._lock:
            pop = self._held.pop
            if not self._weak:  # the usual drop: none of them lived across a beat
                for delivery in deliveries:
                    pop(delivery, None)
                return
            # One held again (after a failed settlement) may be in both.
            pop_weak = self._weak.pop
            for delivery in deliveries:
                pop(delivery, None)
                pop_weak(id(delivery), None)

    def held(self) -> list[AsyncDelivery]:
        """The deliveries whose leases are being renewed, alive. One settled meanwhile
        without :meth:`drop` (a worker letting go of a delivery it cannot settle) is
        dropped here: it is not renewed, nor kept; so is one collected since (the
        application let it go unsettled)."""
        with self._lock:
            young, self._held = self._held, {}
            if young:
                self._weak.update({id(d): weakref.ref(d) for d in young})
        # Let go of outside the lock: a delivery freed here may run finalizers (the
        # hooks'), and one the application no longer references is freed now, so the
        # look below finds it gone (one in a reference cycle: once the collector runs).
        del young
        alive: list[AsyncDelivery] = []
        with self._lock:
            gone: list[int] = []
            for key, ref in self._weak.items():
                delivery = ref()
                if delivery is None or delivery.settled:
                    gone.append(key)
                else:
                    alive.append(delivery)
            for key in gone:
                del self._weak[key]
        return alive

    async def stop(self) -> None:
        """Stop renewing; the held leases then run out on their own."""
        await self._beat.stop()

    async def _renew_held(self) -> None:
        held = self.held()
        lost: list[AsyncDelivery] = []
        failure: Exception | None = None
        for start in range(0, len(held), self._chunk):
            # one call after another: other clients are served between them; a chunk
            # that fails (one topic's key of the wrong type) keeps no other from renewing
            try:
                lost.extend(await self._renew(held[start : start + self._chunk]))
            except Exception as exc:
                failure = failure or exc
        if lost:  # what the chunks renewed found lost is reported, failure or not
            self._report_lost(lost)
        if failure is not None:
            raise failure

    def _report_lost(self, lost: list[AsyncDelivery]) -> None:
        self.drop(lost)
        report_renewal_losses(log, lost)
