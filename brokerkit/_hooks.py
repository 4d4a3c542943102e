"""Calling the message hooks (``brokerkit/hookspecs.py``) cheaply.

The broker, the subscription and the worker call :data:`RELAY`'s methods at a few
points. Each call site first reads one boolean (``RELAY.publish``, ``RELAY.deliver``,
``RELAY.settle``) that says whether any plugin implements a hook of that group, so a
process without message plugins pays one attribute read per message, never a pluggy
call. The flags start true: the first check loads the plugin manager (built-ins and
entry points) and sets them from what is registered; registering or unregistering a
plugin sets them again.

Each implementation of a hook is called on its own, with its own ``try``: pluggy's
own call stops at the first implementation that raises, so one buggy plugin would
silently take the message away from every plugin called after it (the
OpenTelemetry context injection, a Prometheus count).

A start hook and its end hook are a pair: the end of a publish or of a delivery is
handed to the plugins that were registered when it started, and to them alone. A
plugin unregistered meanwhile (``BrokerkitInstrumentor().uninstrument()``) still ends
what it started, at the operation's own end (its span ends and is exported, as
OpenTelemetry's instrumentations end the spans they started); one registered
meanwhile is never handed the end of an operation it did not see start. Until the
deliveries such a plugin started have ended, the call sites' flags stay set; one the
application dropped unsettled is let go once collected, and the flags fall at the next
delivery's start or settlement that finds none left open.

Locks, always taken in this order: :attr:`HookRelay._lock` (building the manager),
:attr:`HookRelay._registering`, :attr:`HookRelay._end_lock`. Nothing is called while
holding ``_end_lock``, and neither a lock is taken nor a plugin called from a weakref
callback (a collection may run one in a thread that holds ``_end_lock``, or a plugin's
own lock).

A worker runs each handler inside the context managers plugins list in the
delivery's scope under :data:`HANDLER_CONTEXT` (:meth:`HookRelay.handler_context`):
the OpenTelemetry plugin makes the delivery's span the current one there, so that
what the handler publishes belongs to the delivery's trace.

The scopes a start hands to its end, and the deliveries a subscription holds until
theirs (:class:`HeldDeliveries`), are :mod:`brokerkit._hook_scopes`'; the settlement
hooks (ack, nack, dead letter, lease loss) are :mod:`brokerkit._hook_settling`'s.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import pluggy

from brokerkit._delivery_drops import drain as drain_dropped
from brokerkit._handler_context import HandlerContext
from brokerkit._hook_impls import Impl, call_each, impls_of, name_async_hooks
from brokerkit._hook_scopes import (
    LEASE_LOST,
    HeldDeliveries,
    PublishScope,
    ReportedScope,
    Scope,
)
from brokerkit._hook_settling import SettlingHooks
from brokerkit._logging import delivery_fields, log_fields
from brokerkit._topics import check_headers
from brokerkit.exceptions import InvalidMessage

if TYPE_CHECKING:
    from brokerkit._message import Message

__all__ = [
    "HANDLER_CONTEXT",
    "RELAY",
    "HeldDeliveries",
    "HookRelay",
    "ObservedPluginManager",
    "get_plugin_manager",
    "report_renewal_losses",
]

log = logging.getLogger("brokerkit.hooks")

_PUBLISH = ("brokerkit_publish_start", "brokerkit_publish_end")
_DELIVER = ("brokerkit_deliver_start", "brokerkit_deliver_end")
_SETTLE = (
    "brokerkit_deliver_end",
    "brokerkit_on_ack",
    "brokerkit_on_nack",
    "brokerkit_on_dead_letter",
    "brokerkit_on_lease_lost",
)

_MESSAGE_HOOKS = frozenset({*_PUBLISH, *_DELIVER, *_SETTLE})

#: The key of a delivery's ``scope`` under which ``brokerkit_deliver_start`` hooks may
#: list callables that each return a context manager (``scope.setdefault(HANDLER_CONTEXT,
#: []).append(factory)``): a worker enters them, in that order, around its handler's
#: call, in the thread or task that runs the handler.
HANDLER_CONTEXT = "brokerkit.handler_context"


class ObservedPluginManager(pluggy.PluginManager):
    """A pluggy manager that tells :data:`RELAY` when its plugins change.

    On the relay's manager, a registration and the relay's refresh after it are one
    step, under one lock: registrations from several threads at once are serialized,
    and the last refresh sees them all (see :meth:`HookRelay._changing`)."""

    def register(self, plugin: object, name: str | None = None) -> str | None:
        with RELAY._changing(self):
            registered = super().register(plugin, name)
        if registered is not None:
            name_async_hooks(self, plugin, registered, _MESSAGE_HOOKS)
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        with RELAY._changing(self):
            return super().unregister(plugin, name)


class HookRelay(SettlingHooks):
    """The message hooks, called only where some plugin implements them (the
    settlement hooks: :class:`~brokerkit._hook_settling.SettlingHooks`).

    Every method is safe to call from any thread; an exception a hook raises is
    logged on ``brokerkit.hooks`` and swallowed.
    """

    def __init__(self) -> None:
        self._manager: pluggy.PluginManager | None = None
        self._lock = threading.Lock()
        # Serializes a change of the manager's plugins with the refresh after it
        # (reentrant: a plugin's registration may register another). The message
        # flow reads the flags and _implemented without a lock; it takes this one only
        # to let the flags fall after a drain (see _drained).
        self._registering = threading.RLock()
        # Makes ending a delivery's hooks, or reporting its lost lease, once-only.
        self._end_lock = threading.Lock()
        #: Some plugin implements brokerkit_publish_start or _end.
        self.publish = True
        #: Some plugin implements brokerkit_deliver_start or _end.
        self.deliver = True
        #: Some plugin implements a settlement hook (or brokerkit_deliver_end).
        self.settle = True
        # The implementations of each message hook some plugin implements, in call
        # order; a hook no plugin implements is not a key, and is never called.
        self._implemented: dict[str, tuple[Impl, ...]] = {}
        # The scopes of the deliveries whose brokerkit_deliver_end is still to be
        # called (by id; one the application dropped unsettled leaves once collected):
        # while there are some, deliver and settle stay set, so that the settlement
        # reaches the relay even once every plugin that started them is gone.
        self._open: weakref.WeakValueDictionary[int, Scope] = weakref.WeakValueDictionary()
        # deliver or settle is set for the open scopes alone, no plugin implementing it
        # (set with the flags, under _end_lock)
        self._draining = False

    def manager(self) -> pluggy.PluginManager:
        """The process's plugin manager, built on first use."""
        manager = self._manager
        if manager is None:
            from brokerkit._plugins import plugin_manager

            with self._lock:
                if self._manager is None:
                    built = plugin_manager()
                    # another thread may register on it as soon as it is set
                    with self._registering:
                        self._manager = built
                        self._refresh(built)
                manager = self._manager
        return manager

    @contextmanager
    def _changing(self, manager: pluggy.PluginManager) -> Iterator[None]:
        """Around a change of ``manager``'s plugins: when it is the relay's manager,
        the change and the refresh after it (even after a change that raised) hold
        :attr:`_registering`, so that a refresh that read the plugins before another
        thread's change cannot overwrite the refresh after it."""
        if manager is not self._manager:
            yield  # a manager being built, or another one: nothing to refresh
            return
        with self._registering:
            try:
                yield
            finally:
                self._refresh(manager)

    def _refresh(self, manager: pluggy.PluginManager) -> None:
        found: dict[str, tuple[Impl, ...]] = {}
        for name in _MESSAGE_HOOKS:
            impls = impls_of(manager, name)
            if impls:
                found[name] = impls

        self._implemented = found
        self._set_flags()

    def _set_flags(self) -> None:
        """Set the flags from the implementations and the open deliveries (holding
        :attr:`_registering`, or while the manager is built). The open deliveries are
        counted and the flags set in one step under :attr:`_end_lock`, so that the end
        of the last of them (:meth:`_ended`) sees either the flags set with it counted,
        and sets them again, or none of it."""
        found = self._implemented

        def implemented(names: Iterable[str]) -> bool:
            return any(name in found for name in names)

        self.publish = implemented(_PUBLISH)
        deliver, settle = implemented(_DELIVER), implemented(_SETTLE)
        with self._end_lock:
            open_ = len(self._open) > 0
            self._draining = open_ and not (deliver and settle)
            self.deliver = deliver or open_
            self.settle = settle or open_

    def _ended(self, scope: Scope) -> None:
        """``scope``'s delivery ended: once the last open one has, the flags may fall."""
        with self._end_lock:
            last = self._open.pop(id(scope), None) is not None and self._draining
            last = last and not self._open
        if last:
            self._drained()

    def _drained(self) -> tuple[bool, bool]:
        """No delivery keeps the flags set any longer: set them again (holding no
        lock; takes :attr:`_registering`, then :attr:`_end_lock`); return the
        delivery flags, ``deliver`` and ``settle``."""
        with self._registering:
            if self._manager is not None:
                self._set_flags()
            return self.deliver, self.settle

    def _call(self, name: str, _after: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        """Call every implementation of hook ``name`` (see :meth:`_call_each`)."""
        self._call_each(self._implemented.get(name), name, _after, **kwargs)

    def _call_each(
        self,
        impls: Sequence[Impl] | None,
        name: str,
        _after: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Call ``impls``, implementations of hook ``name`` (see :func:`call_each`)."""
        if impls:
            call_each(impls, name, kwargs, _after)

    # -- publish ----------------------------------------------------------------------

    def publish_start(
        self, broker: Any, topic: str, headers: dict[str, str], count: int
    ) -> dict[str, Any] | None:
        """Call ``brokerkit_publish_start``; return the call's scope (None: no hook).
        A header a plugin sets that the broker cannot send (not str to str, reserved)
        is left out, logged with the plugin's name: the publish goes on."""
        self.manager()
        if not self.publish:
            return None
        implemented = self._implemented  # the starts and ends of the same plugins
        scope = PublishScope()
        scope.ends = implemented.get("brokerkit_publish_end", ())
        before = dict(headers)

        def keep_valid(plugin: str) -> None:
            for key, value in list(headers.items()):
                if key in before and before[key] is value:
                    continue
                try:
                    check_headers({key: value})
                except InvalidMessage as exc:
                    log.error(
                        "plugin %r set a header the broker cannot send, left out: %s",
                        plugin,
                        exc,
                        extra=log_fields(topic),
                    )
                    if key in before:
                        headers[key] = before[key]
                    else:
                        del headers[key]
            before.clear()
            before.update(headers)

        self._call_each(
            implemented.get("brokerkit_publish_start"),
            "brokerkit_publish_start",
            keep_valid,
            broker=broker,
            topic=topic,
            headers=headers,
            count=count,
            scope=scope,
        )
        return scope

    def publish_end(
        self,
        broker: Any,
        topic: str,
        messages: Sequence[Message],
        error: BaseException | None,
        scope: dict[str, Any],
    ) -> None:
        """Call ``brokerkit_publish_end`` of the plugins registered at the start."""
        self._call_each(
            scope.ends if isinstance(scope, PublishScope) else (),
            "brokerkit_publish_end",
            broker=broker,
            topic=topic,
            messages=tuple(messages),  # (a plugin cannot change the caller's list)
            error=error,
            scope=scope,
        )

    # -- delivery -----------------------------------------------------------------------

    def deliver_start(self, delivery: Any) -> None:
        """Call ``brokerkit_deliver_start`` for a delivery the application now holds."""
        self.manager()
        if not (self.deliver or self.settle):
            return
        # the ends the collector queued (brokerkit._delivery_drops); what a plugin's end
        # raised that is no Exception is raised before this delivery's start is made,
        # which would then never end (the delivery is not handed out)
        raised = drain_dropped()
        if raised is not None:
            raise raised
        if self._draining and not self._open and not any(self._drained()):
            return  # the last open deliveries were dropped unsettled
        # A lease-lost mark is never replaced by a plain scope: the loss of a buffered
        # delivery's lease was reported, and is not reported again on its settlement.
        # Under the lock: a lease keeper may be marking it at this very moment.
        with self._end_lock:
            # the starts and ends of the same plugins; read under the lock, as
            # _set_flags counts the open deliveries (after a change of the plugins)
            implemented = self._implemented
            scope = ReportedScope() if delivery._scope is LEASE_LOST else Scope()
            scope.delivery = scope.error = None
            scope.ends = implemented.get("brokerkit_deliver_end", ())
            delivery._scope = scope
            if scope.ends:
                self._open[id(scope)] = scope
        self._call_each(
            implemented.get("brokerkit_deliver_start"),
            "brokerkit_deliver_start",
            delivery=delivery,
            scope=scope,
        )

    def deliver_end(self, delivery: Any, outcome: str, error: BaseException | None = None) -> None:
        """Call ``brokerkit_deliver_end`` of the plugins registered at the delivery's
        start, once per delivery (later calls do nothing, even from another thread at
        the same time), with what its handler raised if a worker said so
        (:meth:`handler_failed`), else ``error``."""
        if delivery._scope is None or delivery._scope is LEASE_LOST:
            return
        with self._end_lock:
            scope = delivery._scope
            if scope is None or scope is LEASE_LOST:
                return
            delivery._scope = None
        if not isinstance(scope, Scope):
            return
        scope.delivery = None
        try:
            self._call_each(
                scope.ends,
                "brokerkit_deliver_end",
                delivery=delivery,
                outcome=outcome,
                error=scope.error or error,
                scope=scope,
            )
        finally:
            self._ended(scope)

    def handler_failed(self, delivery: Any, error: BaseException) -> None:
        """A worker's handler of ``delivery`` raised ``error``: the delivery's hooks end
        with it, at the settlement the worker makes next, whatever that turns out to be
        (a nack, a dead letter, or ``"unsettled"`` when the worker cannot settle it)."""
        scope = delivery._scope
        if isinstance(scope, Scope):
            scope.error = error

    def handler_context(self, delivery: Any) -> AbstractContextManager[None] | None:
        """What a worker runs the handler of ``delivery`` inside: every context manager
        that the :data:`HANDLER_CONTEXT` list of its scope makes, entered in order and
        left in reverse; None when there is none. One that fails to enter or to leave
        is logged and skipped, and never changes what the handler raised."""
        scope = delivery._scope
        factories = scope.get(HANDLER_CONTEXT) if scope else None
        return HandlerContext(delivery, tuple(factories)) if factories else None


def report_renewal_losses(
    log: logging.Logger, deliveries: Sequence[Any], start: Callable[[], bool] | None = None
) -> None:
    """Warn on a backend's ``log`` of leases its background renewal found run out, and
    tell the lease-loss hook of their ``deliveries`` (once per delivery): settling them
    raises StaleDelivery, which does not report them again. ``start``, if given, is
    asked after the warning, right before the hook is told: false, it is not."""
    if not deliveries:
        return
    log.warning(
        "%d lease(s) had run out before they could be renewed; settling them "
        "will raise StaleDelivery",
        len(deliveries),
        extra=delivery_fields(deliveries),
    )
    if RELAY.settle and (start is None or start()):
        RELAY.lease_lost(deliveries)


#: The one relay of this process.
RELAY = HookRelay()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process's brokerkit plugin manager: the built-in plugins and every installed
    ``brokerkit.plugins`` entry point. ``get_plugin_manager().register(obj)`` adds a
    plugin object (an instrumentation, say) from code; its message hooks are called
    from the next message on, and ``unregister(obj)`` removes it."""
    return RELAY.manager()
