"""The sync NATS broker: :class:`~brokerkit.backends.nats.broker.AsyncNatsBroker` run
on a private event loop by the loop bridge (:func:`brokerkit.aio.bridged`), but that
each delivery's lease names the sync delivery over it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import ClassVar

from brokerkit._broker_async import AsyncBroker
from brokerkit._delivery import Delivery
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._options import BrokerOptions
from brokerkit._subscription import Subscription
from brokerkit._url import BrokerURL
from brokerkit.aio._bridge import LoopBridgeBroker
from brokerkit.backends.nats._leases import Lease, report_lost
from brokerkit.backends.nats._manage import NatsDeclared
from brokerkit.backends.nats.broker import AsyncNatsBroker

__all__ = ["NatsBroker"]


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
        # thread of their own, where it may call this broker (the loop cannot serve a
        # call from itself), and block, without holding up the renewals.
        self._nats._report_lost = _report_in_a_thread

    def _wrapped(self, subscription: Subscription, delivery: AsyncDelivery) -> Delivery:
        """The sync delivery over ``delivery``, which its lease names from now on: a
        lost lease is reported with it (called on the loop, before the renewals run
        again: none reports the inner one)."""
        outer = super()._wrapped(subscription, delivery)
        delivery.receipt.holder = outer
        return outer

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


def _report_in_a_thread(lost: Sequence[Lease]) -> None:
    """:func:`report_lost` in a thread of its own (here, if none can start: the
    interpreter is ending)."""
    try:
        threading.Thread(
            target=report_lost, args=(list(lost),), name="brokerkit-lease-lost", daemon=True
        ).start()
    except RuntimeError:
        report_lost(lost)
