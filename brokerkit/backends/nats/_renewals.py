"""The renewals of a NATS broker's leases: every quarter of the shortest ack wait, each
group's held leases renewed on their own, and what is found lost reported once."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from brokerkit._hooks import report_renewal_losses
from brokerkit._logging import log_fields
from brokerkit.backends.nats._leases import GroupFound, Lease, Leases, last_send
from brokerkit.exceptions import BrokerError

__all__ = ["first_reports", "renew_forever", "report_lost"]

log = logging.getLogger("brokerkit.nats")


async def renew_forever(
    leases: Leases,
    renew: Callable[[list[Lease]], Coroutine[Any, Any, list[Lease]]],
    closed: Callable[[], bool],
    ack_waits: Callable[[dict[str, GroupFound]], None] = lambda found: None,
    report: Callable[[Sequence[Lease]], None] | None = None,
) -> None:
    """Every quarter of the shortest ack wait (counted afresh when a lease with a
    shorter one comes, and waited for untimed while none is held: :meth:`Leases.next_round`),
    ``renew`` every lease still held,
    each group's on their own (:class:`_GroupRenewals`), until ``closed()``: a live
    consumer keeps what it holds; a crashed or closed one loses it after AckWait. A
    lease whose holder was marked settled without being settled (the worker let go
    of it: its handler thread was abandoned, or it could neither ack nor nack it), or
    was collected (the application let go of it unsettled: :meth:`Lease.collected`), or
    was kept for its subscription's next receive past :attr:`Lease.kept_until`, is
    let go unrenewed, so the message comes again after AckWait. A lease found lost
    (run out before it could be renewed, or unknown to the server: what ``renew``
    returns) is let go and reported: see :func:`report_lost` (``report`` calls it,
    where it is given: elsewhere than here, maybe). Before each round, the
    ``AckWait`` of each group held is asked again, and given to ``ack_waits``
    (:meth:`Leases.check_ack_waits`): a group's consumer made again with another is
    seen within a quarter of the ack wait it had, and the leases of the one before it
    are reported lost."""
    tell = report or report_lost
    renewals = _GroupRenewals(leases, renew, tell)
    try:
        while not closed():
            try:
                ack_waits(await leases.check_ack_waits())
            except BrokerError as exc:  # (asked again next round)
                log.debug("could not check the AckWait of a group: %s", exc, extra=log_fields())
            except Exception:  # a bug, or an answer not understood, must not end the renewals
                log.exception("could not check the AckWait of a group", extra=log_fields())
            await leases.next_round(closed)
            if closed():  # (woken by the close: no round)
                return
            now = time.monotonic()
            held: list[Lease] = []
            lost: list[Lease] = []
            let_go = unread = 0
            for reply, lease in list(leases.items()):
                ref = lease._holder
                holder = None if ref is None else ref()
                if ref is not None and holder is None:
                    # Collected: the application let go of it unsettled; nothing can
                    # settle it, and renewed it would never come back.
                    del leases[reply]
                    let_go += 1
                elif holder is not None and holder.settled:
                    del leases[reply]
                elif lease.kept_until is not None and now >= lease.kept_until:
                    # Kept for a receive that did not come (see Lease.kept_until): not
                    # renewed, so the message comes again after AckWait.
                    del leases[reply]
                    unread += 1
                elif renewals.busy(lease.consumer):
                    continue  # (its group's renewal still waits: it tells of this one)
                elif now < last_send(lease):
                    held.append(lease)
                elif now >= lease.deadline:
                    del leases[reply]
                    lost.append(lease)
            holder = None  # (the loop's last one must not be kept while the next round waits)
            if let_go:
                log.debug(
                    "%d delivery(ies) let go unsettled by the application: no longer "
                    "renewed, they come again when their lease runs out",
                    let_go,
                    extra=log_fields(),
                )
            if unread:
                log.debug(
                    "%d delivery(ies) kept for a receive that did not come within their "
                    "ack wait: no longer renewed, they come again when their lease runs out",
                    unread,
                    extra=log_fields(),
                )
            renewals.start(held)
            lost = first_reports([*lost, *leases.take_unreported()])
            if lost:
                tell(lost)
    finally:
        await renewals.end()


class _GroupRenewals:
    """The renewals of a round, one task per group: one group's renewals refused (the
    server's permissions), or not answered, fail those alone (logged; their leases
    run out unless a later round renews them), and hold up no other group's, nor the
    next round: a group whose renewal of a round before still waits is not renewed
    again meanwhile (:meth:`busy`), its leases left to that renewal. What each finds
    lost is reported as it ends."""

    def __init__(
        self,
        leases: Leases,
        renew: Callable[[list[Lease]], Coroutine[Any, Any, list[Lease]]],
        report: Callable[[Sequence[Lease]], None],
    ) -> None:
        self._leases = leases
        self._renew = renew
        self._report = report
        #: The renewal under way of each group, by its consumer.
        self._tasks: dict[str, asyncio.Task[list[Lease]]] = {}

    def busy(self, consumer: str) -> bool:
        """Whether the renewal of ``consumer``'s leases of a round before still waits."""
        return consumer in self._tasks

    def start(self, held: Sequence[Lease]) -> None:
        """Renew ``held`` (of groups not :meth:`busy`), each group's in a task."""
        groups: dict[str, list[Lease]] = {}
        for lease in held:
            groups.setdefault(lease.consumer, []).append(lease)
        loop = asyncio.get_running_loop()
        for consumer, group in groups.items():
            task = loop.create_task(self._renew(group), name=f"brokerkit-nats-renew-{consumer}")
            self._tasks[consumer] = task
            task.add_done_callback(functools.partial(self._ended, consumer, len(group)))

    def _ended(self, consumer: str, count: int, task: asyncio.Task[list[Lease]]) -> None:
        if self._tasks.get(consumer) is task:
            del self._tasks[consumer]
        if task.cancelled():
            return
        failure = task.exception()
        if isinstance(failure, BrokerError):
            log.warning(
                "could not renew %d lease(s) of the group of the JetStream consumer %r: %s",
                count,
                consumer,
                failure,
                extra=log_fields(),
            )
        elif failure is not None:  # a bug must not end the renewals for good
            log.error(
                "could not renew %d lease(s) of the group of the JetStream consumer %r",
                count,
                consumer,
                exc_info=failure,
                extra=log_fields(),
            )
        elif lost := first_reports(task.result()):
            for lease in lost:  # (let go, if ``renew`` did not)
                if self._leases.get(lease.reply) is lease:
                    del self._leases[lease.reply]
            try:
                self._report(lost)
            except Exception:  # (a hook's failure is its own; the renewals go on)
                log.exception("could not report lost leases", extra=log_fields())

    async def end(self) -> None:
        """Cancel the renewals under way, and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def first_reports(lost: Sequence[Lease]) -> list[Lease]:
    """Those of ``lost`` not told of yet, marked told: a lease is reported lost once,
    whichever of its group's check and its group's renewal finds it first."""
    fresh = [lease for lease in dict.fromkeys(lost) if not lease.reported]
    for lease in fresh:
        lease.reported = True
    return fresh


def report_lost(
    lost: Sequence[Lease], start: Callable[[Sequence[Lease]], bool] | None = None
) -> None:
    """Warn of leases a renewal found lost and tell the lease-loss hook of their
    deliveries (``report_renewal_losses``, as Redis's lease keeper does); settling them
    raises StaleDelivery, which does not report them again (the hook is called once per
    delivery). ``start``, if given, is asked after the warning, right before the hook
    is called: false, the hook is not told of ``lost``."""
    deliveries = [held for held in (lease.holder for lease in lost) if held is not None]
    report_renewal_losses(log, deliveries, None if start is None else lambda: start(lost))
