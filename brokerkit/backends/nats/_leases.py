"""The leases of a NATS broker: every delivery it handed out and has not settled, and
which of them a restarted server forgot. The check of their groups' consumers, their
``AckWait`` and whether one was made again, is in
:mod:`~brokerkit.backends.nats._ack_wait_checks`."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from brokerkit._acompat import within
from brokerkit._delivery_async import AsyncDelivery
from brokerkit.backends.nats._ack_wait_checks import (
    KEEPS_CREATED_SINCE,
    AckWaitChecks,
    GroupFound,
    made_again,
)
from brokerkit.backends.nats._client import CONSUMER_NOT_FOUND, STREAM_NOT_FOUND, NatsClient
from brokerkit.backends.nats._server import ServerProcess
from brokerkit.exceptions import BrokerError

__all__ = [
    "KEEPS_CREATED_SINCE",
    "GroupFound",
    "Lease",
    "Leases",
    "deliveries_of",
    "last_send",
    "leased_on_arrival",
    "made_again",
    "margin",
]


@dataclass(eq=False)
class Lease:
    """One delivery the broker handed out and has not settled.

    :ivar deadline: monotonic time by which the server surely still holds it for us:
        the ack wait counted from before the request that leased (or renewed) it.
    :ivar generation: the connection it came on (:attr:`NatsClient.generation`), or
        the one it was last found on the server from (:meth:`Leases.forgotten`).
    :ivar holder: the delivery the application was handed for it (under the sync API,
        the :class:`~brokerkit.Delivery` over the asyncio one): the one the lease-loss
        hook is told of. Held weakly (:meth:`collected` says whether it was):
        the broker's bookkeeping never keeps a delivery alive, so that one the
        application let go of unsettled (a handler's exception in a ``for`` or
        ``async for`` loop) is renewed no more, and its message comes again after
        ``AckWait``. What holds a delivery that is to be renewed holds it strongly:
        the subscription's buffer, the reader's ``kept``
        (:class:`~brokerkit.backends.nats._reader.Reader`: until :attr:`kept_until`),
        a worker while it runs it, the application.
    :ivar stored: the NATS headers the message came with, as stored: a dead letter
        that must fit where the message did falls back on them.
    :ivar created: when the group's consumer it was leased from was made, as the
        server says (``CONSUMER.INFO``'s ``created``; None if unknown): a consumer
        made again (deleted, then made) has another, and holds none of the leases
        of the one before. Taken from its reader when pulled, and ``confirmed`` by
        the first check of its group asked after the pull
        (:meth:`Leases.check_ack_waits`): the consumer may have been made again
        since the reader last saw it.
    :ivar confirmed_on: the server process that answered the check that confirmed
        ``created`` (None if unknown: the connection moved as it answered): see
        :func:`made_again`.
    :ivar kept_until: while its delivery is kept on its subscription's reader for the
        next receive (:attr:`~brokerkit.backends.nats._reader.Reader.kept`), the
        monotonic time until which it is renewed there: one ack wait from when it was
        kept, or from the subscription's last fetch since. Past it, the renewals let it
        go (its message comes again after AckWait, to any member of the group): a
        subscription nobody reads any more holds nothing from the others for longer.
        None while it is not kept.
    """

    reply: str
    deadline: float
    ack_wait: float
    consumer: str
    seq: int
    generation: int
    #: A weak reference to :attr:`holder` (None until one is set).
    _holder: weakref.ReferenceType[Any] | None = field(default=None, repr=False)
    stored: dict[str, str] | None = field(default=None, repr=False)
    created: str | None = None
    confirmed: bool = False
    confirmed_on: ServerProcess | None = None
    kept_until: float | None = None
    #: Told of as lost (see :func:`~brokerkit.backends.nats._renewals.first_reports`):
    #: a check of its group may let it go while its group's renewal is still under way,
    #: and that renewal find it lost too.
    reported: bool = False

    @property
    def holder(self) -> Any:
        """The delivery handed out for it, while anything but the broker holds it
        (None once it was collected, or before one is set)."""
        ref = self._holder
        return None if ref is None else ref()

    @holder.setter
    def holder(self, delivery: Any) -> None:
        self._holder = weakref.ref(delivery)

    def collected(self) -> bool:
        """Whether the delivery handed out for it was collected: nothing but the
        broker's bookkeeping referred to it any more (the application let go of it
        unsettled), so nothing can settle it."""
        ref = self._holder
        return ref is not None and ref() is None


class Leases(AckWaitChecks):
    """The leases one broker holds, by their ack subject (a ``dict[str, Lease]``), and
    the checks of their groups' consumers (:class:`AckWaitChecks`: ``check_ack_waits``)."""

    def __init__(self, client: NatsClient, stream: str) -> None:
        super().__init__()
        self._client = client
        self._stream = stream
        #: Leases :meth:`forgotten` let go that its caller did not ask about: nobody
        #: was told yet (see :meth:`take_unreported`).
        self._unreported: list[Lease] = []
        #: While the renewals wait for their next round (:meth:`next_round`): the ack
        #: wait that wait is counted from, and what wakes it (its loop and event).
        self._basis = math.inf
        self._shorter: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def __setitem__(self, reply: str, lease: Lease) -> None:
        super().__setitem__(reply, lease)
        if lease.ack_wait < self._basis:
            # A shorter ack wait than the renewals' wait was counted from (any, if
            # none was held): its lease must be renewed sooner than that wait ends.
            self.wake()

    def wake(self) -> None:
        """Wake the renewals' wait for their next round (:meth:`next_round`), if they
        wait: from this thread or another (on a loop that is stopped, as it runs
        again). A close wakes it, so that it sees the close."""
        if self._shorter is None:
            return
        loop, shorter = self._shorter
        if loop is _running_loop():
            shorter.set()
        else:
            with contextlib.suppress(RuntimeError):  # (that loop is closed)
                loop.call_soon_threadsafe(shorter.set)

    async def next_round(self, closed: Callable[[], bool] = lambda: False) -> None:
        """Wait for the renewals' next round: a quarter of the shortest ack wait of the
        leases held, counted from now; sooner if a lease with a shorter ack wait comes
        meanwhile: a quarter of its ack wait after it comes, at the latest. While none
        is held, until one comes (untimed: an idle broker runs no round), or at once if
        a lease let go is still to be reported (:meth:`take_unreported`); at once
        once ``closed()``. A close cancels the wait; one made while the wait's loop is
        stopped (the task is that loop's) wakes it (:meth:`wake`): it ends as that
        loop runs again."""
        loop = asyncio.get_running_loop()
        shorter = asyncio.Event()
        basis = self._shortest()
        due = time.monotonic() + basis / 4
        self._basis, self._shorter = basis, (loop, shorter)
        try:
            while not closed() and (not self._unreported or self):
                left = due - time.monotonic()
                if left <= 0:
                    return
                if math.isinf(left):
                    await shorter.wait()  # (nothing held: until a lease comes)
                else:
                    try:
                        await within(shorter.wait(), left)  # a timer, not a synchronization
                    except asyncio.TimeoutError:
                        return
                shorter.clear()
                basis = self._shortest()
                due = min(due, time.monotonic() + basis / 4)
                self._basis = basis
        finally:
            self._basis, self._shorter = math.inf, None

    def _shortest(self) -> float:
        """The shortest ack wait of the leases held (infinite if none is)."""
        return min((lease.ack_wait for lease in self.values()), default=math.inf)

    def discard(self, lease: Lease) -> bool:
        """Forget ``lease``, if it is held; whether it was. Another under its reply
        subject is kept: the delivery of a consumer made again has the reply subject
        of the one before's (the message's own time is in it)."""
        if self.get(lease.reply) is lease:
            del self[lease.reply]
            return True
        return False

    def let_go(self, consumer: str) -> Callable[[], int]:
        """The leases held now of the group consumer ``consumer``, which a pull found
        gone: the returned call, once the broker made that consumer again itself, lets
        them go (none of them is the new one's: a settle says StaleDelivery, and the
        message comes again from it) to be reported (:meth:`take_unreported`), and
        says how many it let go. Taken before the consumer is made again, so that a
        lease pulled from the new one meanwhile is kept."""
        before = [lease for lease in self.values() if lease.consumer == consumer]

        def lose() -> int:
            gone = [lease for lease in before if self.discard(lease)]
            if gone:
                self._unreported.extend(gone)
                self.wake()  # (to be reported, though none be held now)
            return len(gone)

        return lose

    def take_unreported(self) -> list[Lease]:
        """The leases let go as forgotten since the last call, that no caller was told
        of (a check made for other leases of their group found them)."""
        taken, self._unreported = self._unreported, []
        return taken

    def split(self, deliveries: Sequence[AsyncDelivery]) -> tuple[list[Lease], list[AsyncDelivery]]:
        """The leases still surely held, and the deliveries whose lease ran out."""
        now = time.monotonic()
        live: list[Lease] = []
        stale: list[AsyncDelivery] = []
        for delivery in deliveries:
            lease: Lease = delivery.receipt
            held = self.get(lease.reply) is lease
            if held and now < last_send(lease):
                live.append(lease)
            else:
                self.discard(lease)  # (not another's under its reply subject)
                stale.append(delivery)
        return live, stale

    async def forgotten(self, leases: Sequence[Lease]) -> list[Lease]:
        """Those of ``leases``, taken before the connection was last lost, that the
        server no longer knows: one that restarted before it stored a delivery leases
        it again from the start, never answers its ack, and takes a nack or an extend
        of it without a word. Its group's consumer says so: it has delivered nothing
        past that stream sequence (``CONSUMER.INFO``); or it was made again since a
        lease was known to be its (see :meth:`check_ack_waits` and :func:`made_again`),
        and holds none of what the one before delivered. One answer settles every lease
        of the group held from before: the forgotten ones are let go (a settle says
        StaleDelivery), the others counted as this connection's from then on.

        The question is not asked after the last of the group's leases asked about
        can still be settled (:func:`last_send`): if no answer came by then, those
        leases are lost all the same (returned with the forgotten ones).

        :raises BrokerError: the server could not say (the check is made again next
            time).
        """
        generation = self._client.generation
        groups = {lease.consumer for lease in leases if lease.generation != generation}
        forgotten: set[int] = set()
        asked = {id(lease) for lease in leases}
        for consumer in groups:
            old = [
                lease
                for lease in leases
                if lease.consumer == consumer and lease.generation != generation
            ]
            found = await self.delivered(consumer, max(last_send(lease) for lease in old))
            if found is None:  # run out before the server could say
                forgotten.update(id(lease) for lease in old)
                continue
            delivered, created, source = found
            for lease in {id(lease): lease for lease in (*leases, *self.values())}.values():
                if lease.consumer != consumer or lease.generation == generation:
                    continue
                # A consumer made again since (see check_ack_waits) holds none of the
                # one before's: a lease known to be the one before's is lost too.
                if lease.seq > delivered or made_again(lease, created, source):
                    forgotten.add(id(lease))
                    if self.discard(lease) and id(lease) not in asked:
                        self._unreported.append(lease)
                        self.wake()  # (to be reported, though none be held now)
                else:
                    lease.generation = generation
                    if created is not None:  # (asked after its pull: it is this one's)
                        lease.created, lease.confirmed = created, True
                        lease.confirmed_on = source
        return [lease for lease in leases if id(lease) in forgotten]

    async def delivered(
        self, consumer: str, until: float
    ) -> tuple[int, str | None, ServerProcess | None] | None:
        """The last stream sequence ``consumer`` delivered (0 if it is gone), when it
        was made (:attr:`Lease.created`; None if it is gone), and the server process
        that said (see :meth:`_answered_by`); None if the server did not say by the
        monotonic time ``until``."""
        left = until - time.monotonic()
        if left <= 0:
            return None
        before = self._client.process()
        try:
            # (a question, harmless however late it arrives: only the wait is bounded)
            info = await within(
                self._client.api(
                    f"CONSUMER.INFO.{self._stream}.{consumer}", None, "check the leases held"
                ),
                left,
            )
        except asyncio.TimeoutError:
            return None
        error = info.get("error")
        if error is None:
            delivered = int(info.get("delivered", {}).get("stream_seq", 0))
            return delivered, info.get("created"), self._answered_by(before)
        if error.get("err_code") in (CONSUMER_NOT_FOUND, STREAM_NOT_FOUND):
            return 0, None, None
        raise BrokerError(f"JetStream could not say what it delivered: {error.get('description')}")


#: How far apart the rates of two clocks can drift: NTP slews a clock by 500 ppm at
#: most, and the client's and the server's may be slewed in opposite directions.
_DRIFT = 0.001


def margin(lease: Lease) -> float:
    """How long before its deadline a lease stops counting as held: the time an ack
    may take to reach the server (a fifth of the ack wait, a second at most), and
    what the server's clock may have run ahead of this one's over the ack wait."""
    return min(0.2 * lease.ack_wait, 1.0) + _DRIFT * lease.ack_wait


def last_send(lease: Lease) -> float:
    """The monotonic time after which nothing of ``lease`` (an ack, nack, term or
    renewal) may be sent, nor sent again: :attr:`Lease.deadline` less the
    :func:`margin`.

    The deadline is counted from before the request that leased or renewed it, so
    from before the server started its ``AckWait`` (the server leases on receiving
    the pull, renews on receiving the ``+WPI``): it comes before the server's own,
    whatever the two clocks read. What is sent by this time reaches the server
    before that deadline unless it takes longer than the margin on its way (a
    stalled TCP connection can take longer: see docs/backends/nats.md). Nothing is
    sent while the connection is down (nats-py would buffer it and send it on the
    reconnection, however late), and what is not answered by then is given up
    (StaleDelivery): the server may have applied it (its answer lost), or the
    message comes again (at-least-once)."""
    return lease.deadline - margin(lease)


def leased_on_arrival(lease: Lease, arrived: float) -> None:
    """Count the lease of a delivery a waiting pull brought from when it ``arrived``,
    less a :func:`margin` for its way here: the server leased it as it sent it, some
    time after the pull (which the deadline is counted from, and may be over by now),
    so its AckWait runs out no sooner than that. (The broker then restarts the lease
    with a confirmed ``+WPI``, counted from before it was sent.)"""
    lease.deadline = max(lease.deadline, arrived - margin(lease) + lease.ack_wait)


def deliveries_of(
    deliveries: Sequence[AsyncDelivery], leases: Sequence[Lease]
) -> list[AsyncDelivery]:
    """The deliveries whose receipts are ``leases``."""
    wanted = {id(lease) for lease in leases}
    return [delivery for delivery in deliveries if id(delivery.receipt) in wanted]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
