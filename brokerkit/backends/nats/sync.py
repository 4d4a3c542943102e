"""The sync NATS broker: :class:`~brokerkit.backends.nats.broker.AsyncNatsBroker` run
on a private event loop by the loop bridge (:func:`brokerkit.aio.bridged`), but that
each delivery's lease names the sync delivery over it, and that a fetch whose wait is
interrupted (Ctrl-C) hands back what it brings."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import ClassVar

from brokerkit._broker_async import AsyncBroker
from brokerkit._compat import leaves_running
from brokerkit._delivery import Delivery
from brokerkit._logging import delivery_fields
from brokerkit._subscription import Subscription
from brokerkit._subscription_async import AsyncSubscription
from brokerkit.aio._bridge import LoopBridgeBroker
from brokerkit.backends.nats._manage import NatsDeclared
from brokerkit.backends.nats.broker import AsyncNatsBroker

__all__ = ["NatsBroker"]

log = logging.getLogger("brokerkit.nats")


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

    def _fetch(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        """The asyncio fetch, run on the bridge's loop. If the wait for it is
        interrupted (Ctrl-C: a KeyboardInterrupt in this thread), the fetch is not
        stopped (cut off half-way, it could leave messages leased that nobody holds):
        it goes on, and what it brings is handed back as soon as it ends, on the loop
        (:meth:`_hand_back_fetched`); the subscription's next receive, and its close,
        wait for that first (:func:`brokerkit._compat.leaves_running`). Interrupted
        before the loop began it, it fetches nothing."""
        inner: AsyncSubscription = subscription.state
        given_up = threading.Event()

        async def fetch() -> list[Delivery]:
            if given_up.is_set():
                return []
            fetched = await self.inner._fetch(inner, max_messages, timeout)
            # On the loop, before the renewals run again: none reports the inner one.
            wrapped = []
            for delivery in fetched:
                outer = Delivery(
                    delivery.message,
                    subscription=subscription,
                    attempt=delivery.attempt,
                    receipt=delivery,
                )
                delivery.receipt.holder = outer
                wrapped.append(outer)
            return wrapped

        future = self._start(fetch())
        try:
            return future.result()
        except BaseException as exc:
            if not (future.done() and (future.cancelled() or future.exception() is exc)):
                # Raised into this thread, not by the fetch: it goes on.
                given_up.set()
                leaves_running(exc, self._start(self._hand_back_fetched(future)))
            raise

    async def _hand_back_fetched(self, fetch: concurrent.futures.Future[list[Delivery]]) -> None:
        """Once ``fetch`` (whose caller was interrupted) ends, hand back what it
        brought, at once (on the loop)."""
        try:
            fetched = await asyncio.wrap_future(fetch)
        except Exception:  # the fetch failed: it leased nothing it could report
            return
        if fetched:
            try:
                await self.inner._hand_back([delivery.receipt for delivery in fetched])
            except Exception as exc:
                log.warning(
                    "could not hand back deliveries of an interrupted receive: %s",
                    exc,
                    extra=delivery_fields(fetched),
                )

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
