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

No plugin is ever called from the garbage collector: a collection may run in any
thread at any allocation, including one made while that thread holds a plugin's own
lock (prometheus_client makes a new series under a plain ``Lock``), and a plugin called
from there would wait on its own lock for ever. The collector's callback only queues
the end (:class:`queue.SimpleQueue`'s ``put`` is safe there); :func:`drain` calls the
plugins, from a background thread started with the first watched delivery, and at the
relay's next delivery start or settlement and at a subscription's close, in whichever
thread gets there first: an end queued before a :func:`drain` call has been made when
the call returns.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import weakref
from typing import Any

from brokerkit._hook_impls import call_each
from brokerkit._hook_scopes import Scope
from brokerkit._logging import subscription_fields

__all__ = ["UnsettledDeliveries", "drain"]

log = logging.getLogger("brokerkit.hooks")

#: A watched delivery's ``scope.delivery`` while its hooks are open: the end of its
#: hooks (:meth:`HookRelay.deliver_end <brokerkit._hooks.HookRelay.deliver_end>`, its
#: settlement's included) sets that to None before it calls any plugin.
_OPEN = object()


class _Drops:
    """The ends the collector queued, and what makes them (one per process: a forked
    child starts a new one; what its parent queued is the parent's)."""

    __slots__ = ("busy", "ends", "lock", "starting", "thread", "wake")

    def __init__(self) -> None:
        # (kind, message, subscription, attempt, receipt, scope) of each dropped delivery
        self.ends: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        # One item per end queued: wakes the background thread.
        self.wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        # Held while ends are taken and made (reentrant: a plugin's end may settle).
        self.lock = threading.RLock()
        # How many drains hold the lock: with the queue empty, none is making an end.
        self.busy = 0
        self.thread: threading.Thread | None = None
        self.starting = threading.Lock()


_DROPS = _Drops()


def _forked() -> None:
    global _DROPS
    _DROPS = _Drops()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def drain() -> None:
    """End the hooks of the dropped deliveries the collector queued: those queued
    before this call have ended when it returns (waiting for another thread making
    some). Never raises."""
    drops = _DROPS
    if drops.ends.empty() and not drops.busy:
        return
    with drops.lock:
        drops.busy += 1
        try:
            while True:
                try:
                    dropped = drops.ends.get_nowait()
                except queue.Empty:
                    return
                _end(*dropped)
        finally:
            drops.busy -= 1


def _end(
    kind: type[Any], message: Any, subscription: Any, attempt: int, receipt: Any, scope: Scope
) -> None:
    """End ``"unsettled"`` the hooks of a collected delivery, handing them a stand-in:
    a delivery of the same message, subscription, attempt and receipt."""
    from brokerkit._hooks import RELAY  # the relay imports this module

    try:
        stand_in = kind(message, subscription=subscription, attempt=attempt, receipt=receipt)
        call_each(
            scope.ends,
            "brokerkit_deliver_end",
            {"delivery": stand_in, "outcome": "unsettled", "error": scope.error, "scope": scope},
        )
    except Exception:  # (call_each logs a plugin's own)
        log.exception(
            "could not end the hooks of a delivery dropped unsettled",
            extra=subscription_fields(subscription, [message]),
        )
    finally:
        RELAY._ended(scope)


def _drain_forever(drops: _Drops) -> None:
    while True:
        drops.wake.get()
        drain()


def _start(drops: _Drops) -> None:
    with drops.starting:
        if drops.thread is not None:
            return
        thread = threading.Thread(
            target=_drain_forever, args=(drops,), name="brokerkit-dropped-deliveries", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: the close or the relay drains
            return
        drops.thread = thread


class UnsettledDeliveries:
    """The deliveries a subscription's ``receive`` handed out, on a backend without
    ACK, with their hooks open: each held weakly, through a finalizer that queues the
    end of its hooks (``"unsettled"``) when the garbage collector takes it; :meth:`end`
    (the subscription's close) ends those still alive. Safe from any thread: each
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
        drops = _DROPS
        if drops.thread is None:
            _start(drops)
        scope.delivery = _OPEN
        finalizers, key = self._finalizers, id(scope)
        # The finalizer holds what the hook's stand-in delivery is made of, never the
        # delivery itself (which would then never be collected).
        finalizer = weakref.finalize(
            delivery,
            _dropped,
            finalizers,
            key,
            (
                type(delivery),
                delivery.message,
                delivery.subscription,
                delivery.attempt,
                delivery.receipt,
                scope,
            ),
        )
        finalizer.atexit = False  # at interpreter exit, plugins may be half torn down
        finalizers[key] = finalizer

    def end(self) -> None:
        """End ``"unsettled"`` the hooks of the watched deliveries still alive and not
        settled (the subscription closes), and of those the collector took (queued);
        each finalizer is taken once, by this or by the collector (``detach`` and the
        finalizer's call are one atomic step)."""
        from brokerkit._hooks import RELAY  # the relay imports this module

        finalizers = self._finalizers
        while finalizers:
            try:
                _, finalizer = finalizers.popitem()
            except KeyError:  # another thread's end took the last one
                break
            alive = finalizer.detach()
            if alive is not None:  # held here: a settlement's end and this are once
                RELAY.deliver_end(alive[0], "unsettled")
        drain()


def _dropped(finalizers: dict[int, Any], key: int, parts: tuple[Any, ...]) -> None:
    """A watched delivery was collected: queue the end of its hooks unless something
    ended them before. Nothing else can end them now (whatever ended them held the
    delivery until it was done). This runs wherever the collector does, maybe in a
    thread holding a plugin's lock or the relay's: it takes no lock and calls no
    plugin. Queued on this process's queue (read here, not when it was watched): in a
    child forked since, its next start, settlement or close makes the end."""
    drops = _DROPS
    finalizers.pop(key, None)
    scope = parts[-1]
    if scope.delivery is not _OPEN:
        return  # settled (or the close ended it) before it was let go
    scope.delivery = None
    drops.ends.put(parts)
    drops.wake.put(None)
