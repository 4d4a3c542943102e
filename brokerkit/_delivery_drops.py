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

A plugin's end hook that raises is on its own, as everywhere (the other plugins still
end that delivery). What it raises that is not an :class:`Exception` (``SystemExit``,
``KeyboardInterrupt``, a cancellation) is, in the background thread, logged on
``brokerkit.hooks`` (the subscription and the message's id, never its body) and the
thread goes on; in an application's thread (a start, a settlement, a close) it is
raised there once the other plugins have ended that delivery (before a start: that
delivery is not handed out; after a settlement's or a close's own hooks), and the
background thread makes the ends still queued. The thread, found dead, is started
again at the next watched delivery or at exit; where no thread may start at exit
(Python 3.12 and later refuse one in an ``atexit`` handler, and a forked child that
never received has none) the ends are not made, and the exit says so: made in the
exiting thread they could wait for ever on a plugin's lock held at the fork.

At interpreter exit (an ``atexit`` handler, registered with the process's first
watched delivery: after OpenTelemetry's ``TracerProvider`` made before it registered
its own shutdown, which therefore runs after and exports these spans) the hooks of this
process's watched deliveries still open end ``"unsettled"``, queued or still held
(never settled, their subscription never closed); a forked child ends its own, and
what it let go of. The background thread makes them and the exit waits for it
:data:`EXIT_WAIT` seconds at most: an end hook that blocks longer is logged, never
waited for (the thread is a daemon).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

from brokerkit._hook_impls import call_each
from brokerkit._hook_scopes import Scope
from brokerkit._logging import log_fields, subscription_fields

__all__ = ["EXIT_WAIT", "UnsettledDeliveries", "drain"]

log = logging.getLogger("brokerkit.hooks")

#: A watched delivery's ``scope.delivery`` while its hooks are open: the end of its
#: hooks (:meth:`HookRelay.deliver_end <brokerkit._hooks.HookRelay.deliver_end>`, its
#: settlement's included) sets that to None before it calls any plugin.
_OPEN = object()

#: Seconds the interpreter's exit waits, at most, for the ends it asks for.
EXIT_WAIT = 2.0


class _Drops:
    """The ends the collector queued, and what makes them (one per process: a forked
    child starts a new one; what its parent queued is the parent's)."""

    __slots__ = ("busy", "ends", "lock", "starting", "thread", "wake", "watched")

    def __init__(self) -> None:
        # (make, args) of each end: _end of a dropped delivery's parts, or (at exit)
        # _end_held of one still held.
        self.ends: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]]
        self.ends = queue.SimpleQueue()
        # One item per end queued (an Event: the exit's, set once those before it
        # are made): wakes the background thread.
        self.wake: queue.SimpleQueue[threading.Event | None] = queue.SimpleQueue()
        # Held while ends are taken and made (reentrant: a plugin's end may settle).
        self.lock = threading.RLock()
        # How many drains hold the lock: with the queue empty, none is making an end.
        self.busy = 0
        self.thread: threading.Thread | None = None
        self.starting = threading.Lock()
        # The finalizers of the deliveries watched in this process, by scope id.
        self.watched: dict[int, weakref.finalize[Any, Any]] = {}


_DROPS = _Drops()
_AT_EXIT = False  # whether _at_exit is registered (a forked child inherits it)


def _forked() -> None:
    global _DROPS
    _DROPS = _Drops()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def drain() -> BaseException | None:
    """End the hooks of the dropped deliveries the collector queued: those queued
    before this call have ended when it returns (waiting for another thread making
    some). Returns, not raises, what a plugin raised that is not an
    :class:`Exception`, once the other plugins have ended that delivery (the
    background thread makes the ends still queued): the caller raises it once its
    own hooks are done (a settlement's of another delivery, say)."""
    try:
        _drain(_DROPS, False)
    except BaseException as exc:
        return exc
    return None


def _drain(drops: _Drops, background: bool) -> None:
    if drops.ends.empty() and not drops.busy:
        return
    with drops.lock:
        drops.busy += 1
        try:
            while True:
                try:
                    make, args = drops.ends.get_nowait()
                except queue.Empty:
                    return
                try:
                    make(background, *args)
                except BaseException:
                    if not drops.ends.empty():
                        drops.wake.put(None)  # the background thread makes the rest
                    raise
        finally:
            drops.busy -= 1


def _end(
    background: bool,
    kind: type[Any],
    message: Any,
    subscription: Any,
    attempt: int,
    receipt: Any,
    scope: Scope,
) -> None:
    """End ``"unsettled"`` the hooks of a collected delivery, handing them a stand-in:
    a delivery of the same message, subscription, attempt and receipt. Each plugin on
    its own; the first plugin's error that is not an Exception is logged in the
    ``background`` thread, else raised after the others' ends."""
    from brokerkit._hooks import RELAY  # the relay imports this module

    raised: BaseException | None = None
    try:
        stand_in = kind(message, subscription=subscription, attempt=attempt, receipt=receipt)
        kwargs = {"delivery": stand_in, "outcome": "unsettled", "error": scope.error}
        kwargs["scope"] = scope
        for impl in scope.ends:  # one by one: what call_each lets through stops no other
            try:
                call_each((impl,), "brokerkit_deliver_end", kwargs)
            except BaseException as exc:  # not an Exception: call_each logs those
                raised = raised or exc
    except Exception:
        log.exception(
            "could not end the hooks of a delivery dropped unsettled",
            extra=subscription_fields(subscription, [message]),
        )
    except BaseException as exc:
        raised = raised or exc
    finally:
        RELAY._ended(scope)
    if raised is not None:
        _raised(raised, background, "a delivery dropped unsettled", subscription, message)


def _raised(
    exc: BaseException, background: bool, what: str, subscription: Any, message: Any
) -> None:
    """Raise ``exc``, not an Exception, in an application's thread; log it in the
    background thread, which has nobody to raise it to."""
    if not background:
        raise exc
    log.error(
        "could not end the hooks of %s",
        what,
        exc_info=exc,
        extra=subscription_fields(subscription, [message]),
    )


def _end_held(background: bool, delivery: Any) -> None:
    """End ``"unsettled"`` the hooks of ``delivery``, still held at exit."""
    from brokerkit._hooks import RELAY

    try:
        RELAY.deliver_end(delivery, "unsettled")
    except Exception:  # (the relay logs a plugin's)
        log.exception(
            "could not end the hooks of a delivery held at exit",
            extra=subscription_fields(delivery.subscription, [delivery]),
        )
    except BaseException as exc:
        _raised(exc, background, "a delivery held at exit", delivery.subscription, delivery)


def _drain_forever(drops: _Drops) -> None:
    while True:
        done = drops.wake.get()
        try:
            _drain(drops, True)
        except BaseException:  # _end logs a plugin's; this is never expected
            log.exception(
                "could not end the hooks of the deliveries dropped unsettled",
                extra=log_fields(),
            )
        if done is not None:
            done.set()


def _start(drops: _Drops) -> bool:
    """Start the background thread unless it runs; whether it runs."""
    global _AT_EXIT
    with drops.starting:
        if drops.thread is not None and drops.thread.is_alive():
            return True
        if not _AT_EXIT:
            atexit.register(_at_exit)
            _AT_EXIT = True
        thread = threading.Thread(
            target=_drain_forever, args=(drops,), name="brokerkit-dropped-deliveries", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: the close or the relay drains
            return False
        drops.thread = thread
        return True


def _at_exit() -> None:
    """End the hooks of this process's watched deliveries still open, in the
    background thread, waiting :data:`EXIT_WAIT` seconds at most."""
    drops = _DROPS
    watched = drops.watched
    while watched:
        try:
            _, finalizer = watched.popitem()
        except KeyError:
            break
        held = finalizer.detach()  # once: the collector's call or this
        if held is not None and held[2][2][-1].delivery is _OPEN:  # its parts' scope
            drops.ends.put((_end_held, (held[0],)))
    if drops.ends.empty() and not drops.busy:
        return
    done = threading.Event()
    if not _start(drops):
        log.warning(
            "the hooks of %d deliveries left unsettled were not made by the exit: no "
            "thread may start at exit to make them",
            drops.ends.qsize() + drops.busy,
            extra=log_fields(),
        )
        return
    drops.wake.put(done)
    if done.wait(EXIT_WAIT):
        return
    log.warning(
        "the hooks of %d deliveries left unsettled were not made by the exit: a "
        "brokerkit_deliver_end hook has not returned within %g s",
        drops.ends.qsize() + drops.busy,
        EXIT_WAIT,
        extra=log_fields(),
    )


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
        thread = drops.thread
        if thread is None or not thread.is_alive():
            _start(drops)
        scope.delivery = _OPEN
        finalizers, key = self._finalizers, id(scope)
        # The finalizer holds what the hook's stand-in delivery is made of, never the
        # delivery itself (which would then never be collected).
        finalizer = weakref.finalize(
            delivery,
            _dropped,
            (finalizers, drops.watched),
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
        finalizer.atexit = False  # _at_exit ends it, before the plugins shut down
        finalizers[key] = drops.watched[key] = finalizer

    def end(self) -> None:
        """End ``"unsettled"`` the hooks of the watched deliveries still alive and not
        settled (the subscription closes), and of those the collector took (queued);
        each finalizer is taken once, by this or by the collector (``detach`` and the
        finalizer's call are one atomic step)."""
        from brokerkit._hooks import RELAY  # the relay imports this module

        finalizers = self._finalizers
        while finalizers:
            try:
                key, finalizer = finalizers.popitem()
            except KeyError:  # another thread's end took the last one
                break
            _DROPS.watched.pop(key, None)
            alive = finalizer.detach()
            if alive is not None:  # held here: a settlement's end and this are once
                RELAY.deliver_end(alive[0], "unsettled")
        raised = drain()
        if raised is not None:
            raise raised


def _dropped(holders: tuple[dict[int, Any], ...], key: int, parts: tuple[Any, ...]) -> None:
    """A watched delivery was collected: queue the end of its hooks unless something
    ended them before. Nothing else can end them now (whatever ended them held the
    delivery until it was done). This runs wherever the collector does, maybe in a
    thread holding a plugin's lock or the relay's: it takes no lock and calls no
    plugin. Queued on this process's queue (read here, not when it was watched): in a
    child forked since, its next start, settlement or close makes the end."""
    drops = _DROPS
    for finalizers in holders:
        finalizers.pop(key, None)
    scope = parts[-1]
    if scope.delivery is not _OPEN:
        return  # settled (or the close ended it) before it was let go
    scope.delivery = None
    drops.ends.put((_end, parts))
    drops.wake.put(None)
