"""The renewals' check of each group's consumer (:meth:`AckWaitChecks.check_ack_waits`):
its ``AckWait``, which an edit in place changes, and when it was made, which says
whether it was made again since a lease was known to be its (:func:`made_again`).

:class:`AckWaitChecks` is the base of :class:`~brokerkit.backends.nats._leases.Leases`
that does it, over the connection, the stream and the leases it holds.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, NamedTuple

from brokerkit._acompat import within
from brokerkit._logging import log_fields
from brokerkit.backends.nats._client import NatsClient
from brokerkit.backends.nats._server import ServerProcess
from brokerkit.exceptions import BrokerError

if TYPE_CHECKING:
    from brokerkit.backends.nats._leases import Lease

__all__ = ["KEEPS_CREATED_SINCE", "AckWaitChecks", "GroupFound", "made_again"]

log = logging.getLogger("brokerkit.nats")

#: The first nats-server release whose consumer keeps its ``created`` across a restart:
#: before it, a standalone server's file store wrote a ``time.Now()`` of its own as the
#: consumer's creation time, which the server reads back, and reports, once restarted
#: (fixed in 2.12.3). A ``created`` that changed is then no sign of a consumer made
#: again, unless the same server process said both (see :func:`made_again`).
KEEPS_CREATED_SINCE = (2, 12, 3)


class GroupFound(NamedTuple):
    """What :meth:`Leases.check_ack_waits` found of a group's consumer."""

    #: Its ``AckWait``, in seconds.
    ack_wait: float
    #: When it was made (``CONSUMER.INFO``'s ``created``), if the server said.
    created: str | None


def made_again(lease: Lease, created: str | None, source: ServerProcess | None) -> bool:
    """Whether the ``created`` a check of the lease's consumer found (answered by the
    server process ``source``; None if unknown) says that the consumer was made again
    since the lease was known to be its (:attr:`Lease.confirmed`).

    A changed ``created`` says so where it cannot have changed otherwise: the process
    that confirmed the lease is nats-server 2.12.3 or newer (:data:`KEEPS_CREATED_SINCE`),
    or the same process answers now. An older standalone server restarted in between
    (a new ``server_id``) reports another ``created`` for the same consumer: there the
    stream sequence alone tells (a consumer that has not delivered the lease's
    message does not hold it), and the lease takes the new ``created``."""
    if created is None or lease.created == created or not lease.confirmed:
        return False
    confirmed_on = lease.confirmed_on
    if confirmed_on is None:
        return False
    if confirmed_on.release is not None and confirmed_on.release >= KEEPS_CREATED_SINCE:
        return True
    return source is not None and source.server_id == confirmed_on.server_id


class AckWaitChecks(dict[str, "Lease"]):
    """The check of the groups' consumers of :class:`~brokerkit.backends.nats._leases.Leases`,
    which sets the attributes below."""

    _client: NatsClient
    _stream: str
    #: Leases let go that nobody was told of yet (see ``Leases.take_unreported``).
    _unreported: list[Lease]

    async def check_ack_waits(self) -> dict[str, GroupFound]:
        """The ``AckWait`` of each group whose leases are held, asked of its consumer
        (one ``CONSUMER.INFO`` each), and when that consumer was made.

        A consumer edited in place (``nats consumer edit``) counts what it holds with
        its new ``AckWait`` from when each was leased or last renewed: so are the
        leases counted from then on. A consumer made again (deleted, then made, by
        another broker: the documented way to change a group's visibility timeout)
        holds none of what the one before delivered: it delivers it again, to
        whoever pulls, while JetStream still answers a renewal of it (and would take
        its ack, settling the message in its new holder's hands). The leases taken
        from the one before are let go as lost (see :meth:`take_unreported`): their
        settle raises StaleDelivery. Which consumer a lease is from is known from
        the first check after its pull (:attr:`Lease.created`): one pulled since the
        group's last check whose consumer was made again meanwhile is the new one's
        if the new one delivered its message (else it is lost). (The new one could
        have delivered it to another consumer in that time too, a quarter of
        ``AckWait`` at most: that lease is counted as the new one's.)

        Every group is asked at once, and on its own: the wait is bounded (an eighth
        of the shortest ack wait held), and a group that did not answer in it,
        could not say (the server refused it: it is logged), or is gone (the next
        pull makes it again), is left as it was, for the next check; the others are
        counted with what they said all the same.
        """
        groups: dict[str, float] = {}
        for lease in list(self.values()):
            groups[lease.consumer] = min(groups.get(lease.consumer, math.inf), lease.ack_wait)
        if not groups:
            return {}
        # Pulled before any question is sent: a check's answer can say which consumer
        # each of these is from; a lease pulled later waits for the next check. (The
        # leases themselves, not their ids: one let go meanwhile could leave its id to
        # a lease pulled as the questions were asked.)
        asked = set(self.values())
        wait = min(groups.values()) / 8
        answers = await asyncio.gather(
            *(self._ask_group(consumer, wait) for consumer in groups), return_exceptions=True
        )
        found: dict[str, tuple[GroupFound, int, ServerProcess | None]] = {}
        for consumer, answer in zip(groups, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer  # (a cancellation: the renewals end)
                if isinstance(answer, BrokerError):
                    log.debug(
                        "could not check the AckWait of the group of the JetStream consumer %r: %s",
                        consumer,
                        answer,
                        extra=log_fields(),
                    )
                else:  # a bug, or an answer not understood: the other groups go on
                    log.error(
                        "could not check the AckWait of the group of the JetStream consumer %r",
                        consumer,
                        exc_info=answer,
                        extra=log_fields(),
                    )
                continue
            if answer is not None:
                found[consumer] = answer
        self._apply_all(found, asked)
        return {consumer: answer[0] for consumer, answer in found.items()}

    def _apply_all(
        self, found: dict[str, tuple[GroupFound, int, ServerProcess | None]], asked: set[Lease]
    ) -> None:
        """:meth:`_apply` what a check found of each group (its answer, the last stream
        sequence it delivered, the server process that said), the leases held taken
        by group once: one pass over them all, however many groups answered."""
        held: dict[str, list[tuple[str, Lease]]] = {}
        for reply, lease in self.items():
            if lease.consumer in found:
                held.setdefault(lease.consumer, []).append((reply, lease))
        for consumer, (group, delivered, source) in found.items():
            self._apply(held.get(consumer, []), group, delivered, source, asked)

    async def _ask_group(
        self, consumer: str, wait: float
    ) -> tuple[GroupFound, int, ServerProcess | None] | None:
        """What ``consumer``'s info says of it (see :class:`GroupFound`), the last
        stream sequence it delivered, and the server process that said (see
        :meth:`_answered_by`); None if it did not answer within ``wait`` seconds, or
        is gone.

        :raises BrokerError: the server refused to say.
        """
        before = self._client.process()
        try:
            # (a question, harmless however late it arrives: only the wait is bounded)
            info = await within(
                self._client.api(
                    f"CONSUMER.INFO.{self._stream}.{consumer}", None, "check an AckWait"
                ),
                wait,
            )
        except asyncio.TimeoutError:
            return None
        ack_wait = info.get("config", {}).get("ack_wait")
        if "error" in info or not ack_wait:
            return None
        delivered = int(info.get("delivered", {}).get("stream_seq", 0))
        source = self._answered_by(before)
        return GroupFound(ack_wait / 1e9, info.get("created")), delivered, source

    def _answered_by(self, before: ServerProcess | None) -> ServerProcess | None:
        """The server process that answered a question asked when the connection was
        to ``before``: that one, if the connection is to it still (None if not: the
        answer may have come from either)."""
        return before if before is not None and self._client.process() == before else None

    def _apply(
        self,
        held: list[tuple[str, Lease]],
        group: GroupFound,
        delivered: int,
        source: ServerProcess | None,
        asked: set[Lease],
    ) -> None:
        """Count the leases ``held`` of a group (with their ack subjects) with what a
        check found of its consumer (the last stream sequence it had ``delivered``,
        said by the server process ``source``, asked after the leases ``asked`` were
        pulled): those of the consumer before it, if it was made again
        (:func:`made_again`), are let go as lost; the others take its ack wait."""
        for reply, lease in held:
            if group.created is not None and lease.created != group.created:
                if lease not in asked:
                    continue  # (pulled as the question was asked: the next check says)
                if made_again(lease, group.created, source) or lease.seq > delivered:
                    # The consumer before's (this one did not deliver it): lost.
                    del self[reply]
                    self._unreported.append(lease)
                    continue
                # Pulled from this one (the reader lagged), or the same consumer, its
                # created told again by an older server restarted (see made_again).
                lease.created = group.created
            if lease in asked:
                lease.confirmed, lease.confirmed_on = True, source
            if lease.ack_wait != group.ack_wait:
                lease.deadline += group.ack_wait - lease.ack_wait
                lease.ack_wait = group.ack_wait
