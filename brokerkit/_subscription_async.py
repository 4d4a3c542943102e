"""A subscription: one consumer's standing request for a topic's messages."""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from brokerkit._acompat import (
    Event,
    Lock,
    fetch_shielded,
    home_loop,
    on_loop,
    settle_orphans,
    shielded,
)
from brokerkit._capabilities import Capability
from brokerkit._delivery_drops import UnsettledDeliveries
from brokerkit._fetching import FETCHING_HERE, Fetching, current
from brokerkit._hooks import RELAY, HeldDeliveries
from brokerkit._logging import subscription_fields
from brokerkit._schedule import check_timeout
from brokerkit.exceptions import BrokerClosed, BrokerError

if TYPE_CHECKING:
    from brokerkit._broker_async import AsyncBroker
    from brokerkit._delivery_async import AsyncDelivery

__all__ = ["MAX_FETCH_WAIT", "AsyncSubscription", "lend_fetch"]

_T = TypeVar("_T")

log = logging.getLogger("brokerkit")

#: The longest a backend's fetch primitive is asked to block, so that a close
#: from elsewhere is noticed within this many seconds.
MAX_FETCH_WAIT = 1.0
#: The timeouts :meth:`AsyncSubscription.receive` takes without the full check: an
#: exact float or int strictly within this many seconds (so not NaN, not infinite).
_PLAIN_NUMBERS = (float, int)
_FAST_LIMIT = 1e18
#: The longest a close waits for another close under way, whose caller was cancelled
#: (its own waits are bounded by the backend; this only keeps a close from hanging on
#: a bug).
_CLOSE_WAIT = 60.0


def lend_fetch(work: Callable[[], Awaitable[_T]]) -> Callable[[], Awaitable[_T]]:
    """``work``, to be run as a task of its own that the caller awaits (a broker's
    close): called from within a subscription's fetch (``on_gap`` awaiting
    ``broker.close()``), that task counts as within the fetch too, so its close of
    that subscription does not wait for the fetch (which waits for it)."""
    fetching = FETCHING_HERE.get()
    if fetching is None or current() not in fetching.tasks:
        return work

    async def lent() -> _T:
        fetching.tasks.add(current())
        return await work()

    return lent


def _stopped(home: Any) -> bool:
    """Whether ``home``, the event loop a subscription belongs to, is another than
    this one and does not run (closed, or open and not running): a close is then
    carried out here, without it (see :func:`on_loop`)."""
    return home is not None and home is not home_loop() and not home.is_running()


def _fetch_wait(deadline: float | None) -> float:
    """How long one fetch (or a wait for a cancelled receive's) may block: until
    ``deadline`` (None: none), and :data:`MAX_FETCH_WAIT` at most."""
    wait = MAX_FETCH_WAIT if deadline is None else deadline - time.monotonic()
    return max(min(wait, MAX_FETCH_WAIT), 0.0)


class AsyncSubscription:
    """One consumer reading a topic (or a pattern), alone or as a group member.

    Made by :meth:`AsyncBroker.subscribe`. Pull with :meth:`receive`, or iterate.
    Use one subscription from one thread (or task) at a time; open one per consumer.
    Closing it hands back the deliveries it fetched but did not yet return.
    Under asyncio a subscription belongs to the event loop it was made on: use it
    there (its broker's close, from any loop, closes it on that loop).

    :ivar topic: the topic, or the glob pattern when :attr:`pattern` is true.
    :ivar group: the consumer group; members of one group share its messages.
    :ivar consumer: this consumer's name within the group.
    :ivar prefetch: how many messages one round trip may fetch.
    :ivar prefetch_bytes: the payload bytes one fetch may bring, as far as the largest
        message seen so far tells (None: no bound).
    :ivar state: the backend's own per-subscription state.
    """

    def __init__(
        self,
        broker: AsyncBroker,
        topic: str,
        *,
        group: str,
        consumer: str,
        prefetch: int,
        start: str | None,
        pattern: bool,
        prefetch_bytes: int | None = None,
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.group = group
        self.consumer = consumer
        self.prefetch = prefetch
        self.prefetch_bytes = prefetch_bytes
        # The largest payload seen, in bytes; -1 until a fetch brought any.
        self._largest = -1
        self.start = start
        self.pattern = pattern
        self.state: Any = None
        self._buffer: collections.deque[AsyncDelivery] = collections.deque()
        self._closed = Event()
        # Held while a fetch is under way, so that close() hands back what that fetch
        # brings in instead of stranding it.
        self._fetching = Lock()
        # Fetches that cancelled receives left running, with their hand-backs.
        self._orphans: set[Any] = set()
        # Set when a close's work (hand-back, unsubscribe) has ended; a close whose
        # caller was cancelled leaves that work running, kept in _closers.
        self._ended = Event()
        self._closers: set[Any] = set()
        self._closing = threading.Lock()
        # Whether a closing took the buffer to hand it back (under _closing).
        self._taken = False
        # The event loop the subscription belongs to (None in the sync API).
        self._home = home_loop()
        # The deliveries its loops handed out with their hooks open, for close to end
        # those never settled (made on first use: only with plugins).
        self._held: HeldDeliveries | None = None
        # Without ACK: the deliveries receive() handed out with their hooks open, held
        # weakly, for the collector or the close to end those never settled.
        self._unsettled = (
            UnsettledDeliveries() if Capability.ACK not in broker.capabilities else None
        )

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the broker was closed)."""
        return self._closed.is_set()

    @property
    def buffered(self) -> int:
        """Deliveries fetched and leased but not yet returned by :meth:`receive`."""
        return len(self._buffer)

    def buffered_deliveries(self) -> list[AsyncDelivery]:
        """The deliveries fetched and leased but not yet returned by :meth:`receive`
        (a copy, safe to read from another thread or task)."""
        return list(self._buffer)

    async def receive(self, timeout: float | None = None) -> AsyncDelivery | None:
        """The next delivery, waiting up to ``timeout`` seconds (``None``: forever).

        Cancelling a receive strands nothing: a fetch it started runs to its end and
        what it brought is handed back at once.

        With plugins, the delivery's hooks (``brokerkit_deliver_start`` and ``_end``:
        its span, its handling time) start as it is returned, and end with its
        settlement (``ack``, ``nack``), however much later. Where the backend has ACK
        that is all. Without ACK (an ack or a nack only marks it settled, and ends its
        hooks all the same), one never settled ends ``"unsettled"`` when the
        application lets it go (the garbage collector takes it), or when the
        subscription or its broker closes, whichever comes first, once; the
        subscription holds it weakly until then.

        :param timeout: None, or a finite number of seconds (0 or less: do not wait).
        :returns: a delivery, or ``None`` if none came within the timeout.
        :raises InvalidOption: ``timeout`` is not None nor a finite number (a str,
            NaN, infinite).
        :raises BrokerClosed: the subscription or its broker is closed.
        """
        # The hot path: None or a plain float or int of any sane size passes this one
        # test; anything else (NaN fails it, so do huge ints) gets the full check.
        if timeout is not None and not (
            type(timeout) in _PLAIN_NUMBERS and -_FAST_LIMIT < timeout < _FAST_LIMIT
        ):
            timeout = check_timeout(timeout)
        # What an earlier fetch brought is taken without the lock or the clock.
        delivery = self._pop() if not self._closed.is_set() else None
        if delivery is None:
            delivery = await self._next(timeout)
        if delivery is not None and RELAY.deliver:  # without plugins, all hooks cost
            self._observe(delivery)
        return delivery

    def _observe(self, delivery: AsyncDelivery) -> None:
        """Start ``delivery``'s hooks; without ACK, watch it for the collector or the
        close to end them if nothing settles it (the close's own end, if it came
        meanwhile, is this one's)."""
        RELAY.deliver_start(delivery)
        unsettled = self._unsettled
        if unsettled is not None and delivery._scope is not None:
            unsettled.watch(delivery)
            if self._closed.is_set():
                unsettled.end()

    async def _next(self, timeout: float | None) -> AsyncDelivery | None:
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            fetching: Fetching | None = None
            try:
                async with self._fetching:
                    if self._closed.is_set():
                        raise BrokerClosed(f"the subscription to {self.topic!r} is closed")
                    delivery = self._pop()
                    if delivery is not None:
                        return delivery
                    if self._orphans:
                        # A receive cancelled while it fetched left its fetch running:
                        # wait (the lock held, within this receive's timeout) for it to
                        # end and hand back what it brought, first in line. Fetching
                        # beside it would take the messages after those (ORDERED lost)
                        # and lease twice the prefetch.
                        await settle_orphans(self._orphans, _fetch_wait(deadline))
                    if not self._orphans and not self._closed.is_set():
                        fetching = Fetching(self)
                        fetch = functools.partial(
                            self._fetch_within, fetching, self._batch_size(), deadline
                        )
                        try:
                            fetched = await fetch_shielded(fetch, self._hand_back, self._orphans)
                        except BrokerError as exc:
                            if isinstance(exc, BrokerClosed) or not (
                                self._closed.is_set() or self.broker.closed
                            ):
                                raise
                            # Cut short by the close (a retry against a lost server that
                            # the close woke): the close is what the caller needs to hear.
                            raise BrokerClosed(
                                f"the subscription to {self.topic!r} was closed while it received"
                            ) from exc
                        finally:
                            fetching.awaited = False
                        if self.prefetch_bytes is not None:
                            for delivery in fetched:
                                self._largest = max(self._largest, len(delivery.payload))
                        self._buffer.extend(fetched)
                        if not self._closed.is_set():
                            delivery = self._pop()
                            if delivery is not None:
                                return delivery
            finally:
                if fetching is not None and fetching.close_left:
                    # A close from within the fetch (on_gap) left its closing to this
                    # receive: done now that the lock is let go, whatever the fetch
                    # raised (that comes out after it).
                    await shielded(self._finish_close, self._closers)
            if fetching is not None and fetching.close_left:
                raise BrokerClosed(
                    f"the subscription to {self.topic!r} was closed while it received"
                )
            if deadline is not None and time.monotonic() >= deadline:
                return None

    async def _fetch_within(
        self, fetching: Fetching, max_messages: int, deadline: float | None
    ) -> list[AsyncDelivery]:
        """The backend's fetch, in its own task (thread), marked as ``fetching`` for a
        close from within it (:data:`~brokerkit._fetching.FETCHING_HERE`)."""
        task = current()
        fetching.tasks.add(task)
        here = FETCHING_HERE.set(fetching)
        try:
            return await self.broker._fetch(self, max_messages, _fetch_wait(deadline))
        finally:
            FETCHING_HERE.reset(here)
            # A task the fetch started (a connection's reader) keeps this context, and
            # so ``fetching``: the finished task, holding what it fetched, must not stay
            # in it (a delivery let go of unsettled would be held, and renewed, for ever).
            fetching.tasks.discard(task)

    def _pop(self) -> AsyncDelivery | None:
        """The first buffered delivery, or None. A worker's slots may receive from one
        subscription in several threads, and close() may run in another: popleft is
        atomic, and close() takes what it hands back one popleft at a time, so each
        delivery goes to exactly one receive or back to the broker."""
        buffer = self._buffer
        if buffer:
            try:
                return buffer.popleft()
            except IndexError:  # another thread took the last one since
                pass
        return None

    def _batch_size(self) -> int:
        """How many messages the next fetch may bring: ``prefetch``, and no more than
        fit in ``prefetch_bytes`` at the largest size seen (one, before any is seen;
        ``prefetch`` if all seen were empty)."""
        if self.prefetch_bytes is None:
            return self.prefetch
        if self._largest < 0:
            return 1
        if not self._largest:  # empty messages only: any number of them fits
            return self.prefetch
        return max(1, min(self.prefetch, self.prefetch_bytes // self._largest))

    async def _hand_back(self, deliveries: list[AsyncDelivery]) -> None:
        """Return, at once, what a cancelled receive fetched."""
        await self.broker._hand_back(deliveries)

    async def __aiter__(self) -> AsyncGenerator[AsyncDelivery, None]:
        """Deliveries as they come, until the subscription is closed.

        Where the backend has ACK, a delivery's hooks (its span, its handling time) end
        with its settlement, however much later (a batch ``ack`` of the deliveries
        gathered so far); those of one never settled end ``"unsettled"`` when the
        subscription closes. Without ACK, nothing can settle it later: its hooks end
        ``"unsettled"`` as the loop moves past it (or stops at it). So does ``consume``.
        """
        while not self._closed.is_set():
            try:
                delivery = await self.receive(timeout=None)
            except BrokerClosed:
                return
            if delivery is None:
                continue
            if delivery._scope is None or self._hold(delivery):
                yield delivery
            else:
                try:
                    yield delivery
                finally:
                    RELAY.deliver_end(delivery, "unsettled")

    def _hold(self, delivery: AsyncDelivery) -> bool:
        """Where the backend has ACK, hold ``delivery`` (its hooks open) for its
        settlement, or this subscription's close, to end its hooks; whether it did
        (if not, the loop that hands it out ends them as it moves on)."""
        if Capability.ACK not in self.broker.capabilities:
            return False
        held = self._held
        if held is None:
            held = self._held = HeldDeliveries()
        held.add(delivery)
        return True

    async def close(self) -> None:
        """Stop reading; hand back the fetched deliveries not yet returned.

        A receive under way elsewhere ends with :class:`BrokerClosed`, and what it
        fetched is handed back too; close waits for it, about a second at most (the
        longest a backend is asked to block in one fetch; the memory backend wakes
        it at once). If the server cannot be reached, the subscription is closed all
        the same and the leases run out on their own.

        Cancelling a close (once or again and again, as a cancel scope does) strands
        nothing: the closing goes on to its end and the cancellation is raised at once;
        a later close, the broker's included, waits for that closing to end. A close
        while another is under way waits for it too.

        Called from within the subscription's own fetch (a backend's callback run
        within it, such as redis+pubsub's ``on_gap``, or awaited by an ``async def``
        one, ``broker.close()`` included), it cannot wait for that fetch to end: it
        marks the subscription closed and returns; the receive that fetched does the
        closing (hand-back, unsubscribe) as soon as the fetch has ended and it lets go
        of the fetch's lock, then raises :class:`BrokerClosed` (or what the callback
        raised). A task that the callback only starts closes as any other does.

        Under asyncio, called on another event loop than the subscription's, it is
        carried out on that loop, as the broker's close is.
        """
        await self._close_at_home(self._mark_closed())

    def _mark_closed(self) -> bool:
        """Mark the subscription closed (from any thread) and wake a fetch of it that
        waits; whether this call did (then its close does the closing's work)."""
        with self._closing:
            first = not self._closed.is_set()
            self._closed.set()  # nobody waits on it: a flag any thread may set
        if first:
            self.broker._forget(self)
            self.broker._wake_fetches(self)
        return first

    async def _close(self, first: bool) -> None:
        """The rest of :meth:`close`, after :meth:`_mark_closed`."""
        fetching = FETCHING_HERE.get()
        if fetching is not None and fetching.within(self):
            # Within this subscription's own fetch, whose lock the closing needs: the
            # receive waiting for the fetch closes it as it lets go of the lock.
            if first:
                fetching.close_left = True
            return
        if first:
            await shielded(self._finish_close, self._closers)
        else:
            await self._ended.wait(_CLOSE_WAIT)

    async def _close_at_home(self, first: bool) -> None:
        """:meth:`_close`, on the event loop the subscription belongs to: its broker
        may be closed from another thread's loop. If that loop stops before the
        closing has taken what is buffered there (its thread shutting down), the
        closing is done here instead, and the one sent there does not hand back again
        should the loop run once more."""
        if await on_loop(self._home, functools.partial(self._close, first), _CLOSE_WAIT):
            return
        if _stopped(self._home) and not self._taken:
            await shielded(self._finish_close, self._closers)
        if not self._ended.is_set():
            log.warning(
                "gave up waiting for the close of %r on its event loop, in another thread "
                "(the loop stopped, or %d s passed); its leases run out on their own",
                self,
                _CLOSE_WAIT,
                extra=subscription_fields(self),
            )

    async def _finish_close(self) -> None:
        """Wait for the fetches of cancelled receives, hand back what is buffered and
        unsubscribe; the broker lets the subscription go at the end. Without its
        event loop, which does not run, a receive pending there is not waited for."""
        buffered: list[AsyncDelivery] | None = []
        try:
            if _stopped(self._home):
                # A receive pending there holds the lock for ever: not waited for.
                buffered = self._take_buffered()
            else:
                async with self._fetching:
                    # The lock held, no receive leaves a fetch running any more.
                    await settle_orphans(self._orphans, MAX_FETCH_WAIT)
                    buffered = self._take_buffered()
            if buffered is None:  # taken by another closing (see _close_at_home)
                return
            await self.broker._unsubscribe(self, buffered)
        except BrokerError as exc:
            log.warning(
                "could not hand back %d delivery(ies) of %r on close: %s",
                len(buffered or ()),
                self,
                exc,
                extra=subscription_fields(self, buffered or []),
            )
        finally:
            if self._held is not None:
                self._held.end()
            if self._unsettled is not None:
                self._unsettled.end()
            self.broker._let_go(self)
            self._ended.set()

    def _take_buffered(self) -> list[AsyncDelivery] | None:
        """Empty the buffer one delivery at a time (a receive's lock-free popleft in
        another thread takes each one it gets out of the hand-back); None if a closing
        took it before (only one closing hands back and unsubscribes)."""
        with self._closing:
            if self._taken:
                return None
            self._taken = True
        taken = []
        buffer = self._buffer
        while buffer:
            try:
                taken.append(buffer.popleft())
            except IndexError:
                break
        return taken

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        kind = "pattern" if self.pattern else "topic"
        return (
            f"<{type(self).__name__} {kind}={self.topic!r} group={self.group!r} "
            f"consumer={self.consumer!r}>"
        )
