"""The sync NATS broker: :class:`~brokerkit.backends.nats.broker.AsyncNatsBroker` run
on a private event loop by the loop bridge (:func:`brokerkit.aio.bridged`), but that
each delivery's lease names the sync delivery over it."""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from collections.abc import Sequence
from typing import ClassVar

from brokerkit._broker_async import AsyncBroker
from brokerkit._delivery import Delivery
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._logging import delivery_fields, log_fields
from brokerkit._options import BrokerOptions
from brokerkit._subscription import Subscription
from brokerkit._url import BrokerURL
from brokerkit.aio._bridge import LoopBridgeBroker
from brokerkit.backends.nats._client import CLOSE_WAIT
from brokerkit.backends.nats._leases import Lease
from brokerkit.backends.nats._manage import NatsDeclared
from brokerkit.backends.nats._renewals import report_lost
from brokerkit.backends.nats.broker import AsyncNatsBroker

__all__ = ["NatsBroker"]

log = logging.getLogger("brokerkit.nats")

#: Seconds the reporter's thread waits for a report before it ends (the next report
#: starts another): a broker dropped unclosed leaves no thread behind for long.
_IDLE = 10.0


class NatsBroker(LoopBridgeBroker):
    """:class:`AsyncNatsBroker` under the sync API, on a private event loop (what
    :func:`brokerkit.aio.bridged` makes, but that the lease of each delivery names
    the sync delivery over it, so that a lost lease is reported with the delivery the
    application holds)."""

    async_class: ClassVar[type[AsyncBroker]] = AsyncNatsBroker
    schemes = AsyncNatsBroker.schemes
    capabilities = AsyncNatsBroker.capabilities
    Options = AsyncNatsBroker.Options
    driver_query_keys = AsyncNatsBroker.driver_query_keys
    extend_beyond_timeout = AsyncNatsBroker.extend_beyond_timeout
    extend_shortens = AsyncNatsBroker.extend_shortens

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        # The renewals run on the bridge's loop: they tell the lease-loss hook in a
        # thread of the broker's own, where it may call this broker (the loop cannot
        # serve a call from itself), and block, without holding up the renewals.
        self._reporter = _Reporter()
        self._nats._report_lost = self._reporter.report

    def _wrapped(self, subscription: Subscription, delivery: AsyncDelivery) -> Delivery:
        """The sync delivery over ``delivery``, which its lease names from now on: a
        lost lease is reported with it (called on the loop, before the renewals run
        again: none reports the inner one)."""
        outer = super()._wrapped(subscription, delivery)
        delivery.receipt._holder = weakref.ref(outer)  # (held weakly: see Lease.holder)
        return outer

    def _wake_waits(self) -> None:
        """The close begins: what waits on the loop for a lost connection gives up
        now (:meth:`AsyncNatsBroker._wake_waits`; the bridge's close waits for the
        calls under way before it closes the asyncio broker)."""
        self._nats._wake_waits()

    def _close(self) -> None:
        """Close as the bridge does (the renewals end), then end the reporter's thread
        once it has told the hook of what it was given (:data:`CLOSE_WAIT` seconds at
        most: what a hook that blocks longer was not yet told is logged, never reported
        after the close)."""
        try:
            super()._close()
        finally:
            self._reporter.close(CLOSE_WAIT)

    @property
    def declared(self) -> NatsDeclared:
        """See :attr:`AsyncNatsBroker.declared`."""
        return self._nats.declared

    def delete(self, streams: frozenset[str], consumers: frozenset[tuple[str, str]]) -> None:
        """See :meth:`AsyncNatsBroker.delete` (call once the subscriptions that read
        them are closed: a fetch makes a group's consumer again)."""
        self._run(self._nats.delete(streams, consumers))

    @property
    def _nats(self) -> AsyncNatsBroker:
        inner = self.inner
        assert isinstance(inner, AsyncNatsBroker)
        return inner


class _Reporter:
    """Tells the lease-loss hook of what the renewals found lost (:func:`report_lost`)
    in one thread, in the order found: a hook that blocks holds up later reports of
    the broker, never the renewals, and is never called twice at once. The thread is
    started by a report, ends after :data:`_IDLE` seconds with none (the next starts
    it again), and at :meth:`close`, after which no report starts (what is left then
    is logged, not reported)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[list[Lease] | None] = queue.SimpleQueue()
        #: Guards :attr:`_thread`, :attr:`_closed` and :attr:`_ended` (and the queue,
        #: against an idle thread ending as a report comes).
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: The close stopped waiting: no report starts from then on.
        self._ended = False

    def report(self, lost: Sequence[Lease]) -> None:
        """Have the thread report ``lost`` (here, if it cannot start: the interpreter
        is ending); after :meth:`close`, log it unreported."""
        with self._lock:
            if self._closed:
                _unreported(lost)
                return
            self._queue.put(list(lost))
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="brokerkit-lease-lost", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                self._queue = queue.SimpleQueue()
            else:
                self._thread = thread
                return
        report_lost(lost)

    def _run(self) -> None:
        while True:
            try:
                lost = self._queue.get(timeout=_IDLE)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if lost is None:  # (closed)
                return
            with self._lock:
                ended = self._ended
            if ended:  # (taken as the close stopped waiting)
                _unreported(lost)
                continue
            try:
                report_lost(lost, self._starts)
            except Exception:  # the thread goes on for the next report
                log.exception("could not report lost leases", extra=log_fields())

    def _starts(self, lost: Sequence[Lease]) -> bool:
        """Whether the hook may be told of ``lost``, asked right before it is (after the
        report's warning): not once the close stopped waiting (``lost`` is then logged
        unreported). Decided under the lock that the close's end takes: a report has
        begun (brokerkit's own dispatch to the plugins is all that is left of its
        start) before :meth:`close` returns, or is never told."""
        with self._lock:
            if not self._ended:
                return True
        _unreported(lost)
        return False

    def close(self, wait: float) -> None:
        """End the thread once it has reported what it was given: ``wait`` seconds at
        most (none from the thread itself: a hook that closes the broker). What it has
        not started to report by then is logged, never reported: no report starts
        after the close (a report starts as the hook is called: :meth:`_starts`)."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait)
        left: list[Lease] = []
        with self._lock:
            self._ended = True
            while True:
                try:
                    taken = self._queue.get_nowait()
                except queue.Empty:
                    break
                if taken is not None:
                    left += taken
            if thread is not None:
                self._queue.put(None)  # (the thread ends after the report under way)
        _unreported(left)


def _unreported(lost: Sequence[Lease]) -> None:
    """Log leases found lost that are not reported to the lease-loss hook: the broker
    closed first."""
    deliveries = [held for held in (lease.holder for lease in lost) if held is not None]
    if deliveries:
        log.warning(
            "%d lease(s) had run out before they could be renewed; not reported to "
            "brokerkit_on_lease_lost: the broker closed first",
            len(deliveries),
            extra=delivery_fields(deliveries),
        )
