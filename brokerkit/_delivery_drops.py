"""The end of the hooks of a delivery that nothing will settle: one that ``receive``
handed out on a backend without ACK (redis+pubsub, nats+core), that the application
neither acks nor nacks (on such a backend an ack or a nack only marks it settled, and
ends its hooks as anywhere else).

Its hooks (an OpenTelemetry ``process`` span, the handler duration) end ``"unsettled"``
when the application lets it go (the garbage collector takes it), or when its
subscription or broker closes, whichever comes first, once; a settlement before either
ends them as usual and leaves nothing for them to do. The subscription holds such a
delivery weakly (:class:`UnsettledDeliveries`), so a subscriber that never settles
keeps only what the application itself keeps.
"""

from __future__ import annotations

import weakref
from typing import Any

from brokerkit._hook_impls import call_each
from brokerkit._hook_scopes import Scope
from brokerkit._hooks import RELAY

__all__ = ["UnsettledDeliveries"]

#: A watched delivery's ``scope.delivery`` while its hooks are open: the end of its
#: hooks (:meth:`HookRelay.deliver_end <brokerkit._hooks.HookRelay.deliver_end>`, its
#: settlement's included) sets that to None before it calls any plugin.
_OPEN = object()


class UnsettledDeliveries:
    """The deliveries a subscription's ``receive`` handed out, on a backend without
    ACK, with their hooks open: each held weakly, through a finalizer that ends its
    hooks ``"unsettled"`` when the garbage collector takes it; :meth:`end` (the
    subscription's close) ends those still alive. Safe from any thread: each
    delivery's hooks end once, whether a settlement, the close and the collector race
    or not."""

    __slots__ = ("_finalizers",)

    def __init__(self) -> None:
        # A finalizer per delivery still alive (by its scope's id); one removes itself
        # when it runs, the close takes them all.
        self._finalizers: dict[int, weakref.finalize[Any, Any]] = {}

    def watch(self, delivery: Any) -> None:
        """Watch ``delivery``, whose hooks have just started (in the thread that will
        hand it out: nothing else can end them yet)."""
        scope = delivery._scope
        if not isinstance(scope, Scope) or not scope.ends:
            return  # no plugin implements brokerkit_deliver_end: nothing to end
        scope.delivery = _OPEN
        finalizers, key = self._finalizers, id(scope)
        # The finalizer holds what the hook's stand-in delivery is made of, never the
        # delivery itself (which would then never be collected).
        finalizer = weakref.finalize(
            delivery,
            _end_dropped,
            finalizers,
            key,
            type(delivery),
            delivery.message,
            delivery.subscription,
            delivery.attempt,
            delivery.receipt,
            scope,
        )
        finalizer.atexit = False  # at interpreter exit, plugins may be half torn down
        finalizers[key] = finalizer

    def end(self) -> None:
        """End ``"unsettled"`` the hooks of the watched deliveries still alive and not
        settled (the subscription closes); each finalizer is taken once, by this or
        by the collector (``detach`` and the finalizer's call are one atomic step)."""
        finalizers = self._finalizers
        while finalizers:
            try:
                _, finalizer = finalizers.popitem()
            except KeyError:  # another thread's end took the last one
                break
            alive = finalizer.detach()
            if alive is not None:  # held here: a settlement's end and this are once
                RELAY.deliver_end(alive[0], "unsettled")


def _end_dropped(
    finalizers: dict[int, Any],
    key: int,
    kind: type[Any],
    message: Any,
    subscription: Any,
    attempt: int,
    receipt: Any,
    scope: Scope,
) -> None:
    """A watched delivery was collected: end its hooks ``"unsettled"`` unless something
    ended them before. Nothing else can end them now (whatever ended them held the
    delivery until it was done), so no lock is taken: a collection may run this in a
    thread that holds the relay's. The hooks are handed a stand-in: a delivery of the
    same message, subscription, attempt and receipt."""
    finalizers.pop(key, None)
    if scope.delivery is not _OPEN:
        return  # settled (or the close ended it) before it was let go
    scope.delivery = None
    stand_in = kind(message, subscription=subscription, attempt=attempt, receipt=receipt)
    call_each(
        scope.ends,
        "brokerkit_deliver_end",
        {"delivery": stand_in, "outcome": "unsettled", "error": scope.error, "scope": scope},
    )
