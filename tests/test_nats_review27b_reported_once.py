"""A lease is reported lost once, whichever of its group's check and its group's
renewal finds it first (second review of 27b). A round's renewals no longer wait for
each group: while a group's renewal is still under way, the next round's check may let
one of its leases go (its consumer made again) and report it, and the renewal, when it
ends, found it lost too and reported it again: the lease-loss hook was told twice of
one delivery. The renewal loop (``renew_forever``) is the real one; what the server
would answer is given by the two seams it takes (the group's renewal, and the check,
as ``_apply`` answers a consumer made again), ordered by events, no sleeps."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from brokerkit.backends.nats._leases import GroupFound, Lease, Leases
from brokerkit.backends.nats._renewals import renew_forever


class _Holder:
    settled = False


class _MadeAgainOnSecondCheck(Leases):
    """Its group's consumer found made again by the second check: the lease let go and
    left for the round to report, as ``_apply`` does."""

    def __init__(self) -> None:
        super().__init__(client=None, stream="S")  # type: ignore[arg-type]
        self.checks = 0
        self.let_go = asyncio.Event()
        #: the round after the one the lease was let go in has begun: both the round
        #: and the group's renewal have told what they found
        self.round_after = asyncio.Event()

    async def check_ack_waits(self) -> dict[str, GroupFound]:
        self.checks += 1
        if self.checks == 2:
            for reply, lease in list(self.items()):
                del self[reply]
                self._unreported.append(lease)
            self.let_go.set()
        if self.checks == 3:
            self.round_after.set()
        return {}


def test_a_lease_let_go_by_a_check_during_its_renewal_is_reported_once() -> None:
    async def main() -> collections.Counter[str]:
        leases = _MadeAgainOnSecondCheck()
        holder = _Holder()  # (held here: a lease holds its delivery weakly)
        lease = Lease("ack.slow.1", time.monotonic() + 2.0, 2.0, "slow", 1, 0)
        lease.holder = holder
        leases[lease.reply] = lease
        renewing: list[asyncio.Task[Any]] = []

        async def renew(group: list[Lease]) -> list[Lease]:
            # the group's renewal goes unanswered until the check let the lease go, then
            # gives it up as lost (as an unanswered +WPI is)
            renewing.append(asyncio.current_task())  # type: ignore[arg-type]
            await leases.let_go.wait()
            return list(group)

        told: collections.Counter[str] = collections.Counter()

        def report(lost: Any) -> None:
            told.update(item.reply for item in lost)

        closed = False
        loop = asyncio.create_task(renew_forever(leases, renew, lambda: closed, report=report))
        await asyncio.wait_for(leases.round_after.wait(), 30)
        await asyncio.wait_for(asyncio.wait({renewing[0]}), 30)  # its end told (or not)
        closed = True
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        return told

    assert asyncio.run(main()) == {"ack.slow.1": 1}
