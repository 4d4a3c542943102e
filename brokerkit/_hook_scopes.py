"""What a hooked operation holds between its start hook and its end hook: the scope
handed to the plugins (a plain dict to them), which also carries what the relay
(:mod:`brokerkit._hooks`) needs to end it, and :class:`HeldDeliveries`, the
deliveries a subscription handed out whose end is still to come."""

from __future__ import annotations

import weakref
from typing import Any

from brokerkit._hook_impls import Impl

__all__ = ["LEASE_LOST", "HeldDeliveries", "PublishScope", "ReportedScope", "Scope"]

# A delivery's ``_scope`` once its lost lease was reported: ``brokerkit_on_lease_lost``
# is called once per delivery (an extend, the settlement after it and a lease keeper
# may each find the same lease gone). Kept on the delivery, so it goes with it; an
# empty dict no hook is ever handed.
LEASE_LOST: dict[str, Any] = {}


class Scope(dict[str, Any]):
    """A delivery's hook scope: to the plugins, a plain dict (``delivery``: see
    ``brokerkit._delivery_drops``, which marks a watched one's open hooks there)."""

    __slots__ = ("__weakref__", "delivery", "ends", "error")
    delivery: Any
    #: what a worker's handler raised, for the hooks' end (see HookRelay.handler_failed)
    error: BaseException | None
    #: the brokerkit_deliver_end implementations of the plugins registered at its start
    ends: tuple[Impl, ...]


class PublishScope(dict[str, Any]):
    """A publish's hook scope: to the plugins, a plain dict."""

    __slots__ = ("ends",)
    #: the brokerkit_publish_end implementations of the plugins registered at its start
    ends: tuple[Impl, ...]


class ReportedScope(Scope):
    """The scope of a delivery received after its lost lease was reported (a prefetched
    delivery a background renewal found gone while buffered): its hooks start and end
    as any other's, but the loss is not reported again when its settlement is refused."""

    __slots__ = ()


class HeldDeliveries:
    """The deliveries a subscription handed out whose hooks are open, held weakly until
    their settlement ends them; :meth:`end` ends those still open ``"unsettled"``.
    A delivery the application dropped unsettled is let go unended, at once: nothing
    here refers to it strongly, nor makes a cycle with it that only the garbage
    collector would take apart (its lease, renewed while it lives, then runs out)."""

    __slots__ = ("_deliveries",)

    def __init__(self) -> None:
        self._deliveries: dict[int, weakref.ref[Any]] = {}

    def add(self, delivery: Any) -> None:
        """Hold ``delivery`` (one whose hooks are open) until :meth:`end`."""
        if not isinstance(delivery._scope, Scope):
            return
        deliveries, key = self._deliveries, id(delivery)
        deliveries[key] = weakref.ref(delivery, lambda _: deliveries.pop(key, None))

    def end(self) -> None:
        """End the hooks of the held deliveries not ended yet ``"unsettled"`` (once)."""
        from brokerkit._hooks import RELAY  # the relay imports this module

        deliveries = self._deliveries.copy()  # one C call: safe beside an add elsewhere
        self._deliveries.clear()
        for ref in deliveries.values():
            delivery = ref()
            if delivery is not None and isinstance(delivery._scope, Scope):
                RELAY.deliver_end(delivery, "unsettled")
