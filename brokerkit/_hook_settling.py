"""The settlement hooks of :data:`brokerkit._hooks.RELAY`: ``brokerkit_on_ack``,
``brokerkit_on_nack``, ``brokerkit_on_dead_letter`` and ``brokerkit_on_lease_lost``,
and the end of each settled delivery's hooks (``brokerkit_deliver_end``).

:class:`SettlingHooks` is a base of :class:`~brokerkit._hooks.HookRelay`, which holds
the state it reads (the flags, the implementations, the open deliveries and the locks:
see :mod:`brokerkit._hooks` for their rules). Each plugin is handed the same tuple of
deliveries, whatever another does with it; a delivery's lost lease is reported once,
and its delivery hooks end once, whichever of its settlement and its lease loss comes
first.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from brokerkit._delivery_drops import drain as drain_dropped
from brokerkit._hook_impls import Impl
from brokerkit._hook_scopes import LEASE_LOST, ReportedScope, Scope

__all__ = ["SettlingHooks"]


class SettlingHooks:
    """The settlement hooks of :class:`~brokerkit._hooks.HookRelay`."""

    settle: bool
    _draining: bool
    _open: weakref.WeakValueDictionary[int, Scope]
    _end_lock: threading.Lock

    if TYPE_CHECKING:  # provided by HookRelay

        def manager(self) -> Any: ...

        def _drained(self) -> tuple[bool, bool]: ...

        def _ended(self, scope: Scope) -> None: ...

        def _call(
            self, name: str, _after: Callable[[str], None] | None = None, **kwargs: Any
        ) -> None: ...

        def _call_each(
            self,
            impls: Sequence[Impl] | None,
            name: str,
            _after: Callable[[str], None] | None = None,
            **kwargs: Any,
        ) -> None: ...

        def deliver_end(
            self, delivery: Any, outcome: str, error: BaseException | None = None
        ) -> None: ...

    def settled(
        self,
        broker: Any,
        deliveries: Sequence[Any],
        requeue: bool | None,
        stale: Sequence[Any] = (),
        *,
        reason: str | None = None,
    ) -> None:
        """Deliveries were acked (``requeue`` None) or nacked; ``stale`` of them were not,
        their leases having run out. ``reason``: the caller's, for those dead-lettered."""
        self.manager()
        if not self.settle:
            return
        # what a dropped delivery's plugin end raised that is no Exception is raised
        # once this settlement's own hooks are made (see deliver_start)
        raised = drain_dropped()
        try:
            self._settled(broker, deliveries, requeue, stale, reason)
        finally:
            if raised is not None:
                raise raised

    def _settled(
        self,
        broker: Any,
        deliveries: Sequence[Any],
        requeue: bool | None,
        stale: Sequence[Any],
        reason: str | None,
    ) -> None:
        if self._draining and not self._open and not self._drained()[1]:
            return  # the last open deliveries were dropped unsettled
        # tuples: each plugin is handed the same deliveries, whatever one does with them
        stale_ids = {id(d) for d in stale}
        done = tuple(d for d in deliveries if id(d) not in stale_ids)
        lost = tuple(d for d in deliveries if id(d) in stale_ids)
        dead = tuple(_dead_lettered(broker, done, requeue))
        if requeue is None:
            outcome = "ack"
            if done:
                self._call("brokerkit_on_ack", deliveries=done)
        else:
            outcome = "nack"
            if done:
                self._call("brokerkit_on_nack", deliveries=done, requeue=requeue)
            if dead:
                reason = reason or ("rejected" if not requeue else "max_deliveries")
                self._call("brokerkit_on_dead_letter", deliveries=dead, reason=reason)
        if lost:
            self.lease_lost(lost)
        dead_ids = {id(d) for d in dead}
        for delivery in done:
            self.deliver_end(delivery, "dead-letter" if id(delivery) in dead_ids else outcome)

    def lease_lost(self, deliveries: Sequence[Any]) -> None:
        """Call ``brokerkit_on_lease_lost`` for those of ``deliveries`` whose lost lease
        was not reported yet (once per delivery), and end their delivery hooks."""
        self.manager()
        if not self.settle or not deliveries:
            return
        fresh: list[tuple[Any, dict[str, Any] | None]] = []
        with self._end_lock:
            for delivery in deliveries:
                scope = delivery._scope
                if scope is not LEASE_LOST:
                    delivery._scope = LEASE_LOST
                    fresh.append((delivery, scope))
                    if isinstance(scope, Scope):
                        scope.delivery = None
        if not fresh:
            return
        unreported = tuple(d for d, scope in fresh if not isinstance(scope, ReportedScope))
        if unreported:
            self._call("brokerkit_on_lease_lost", deliveries=unreported)
        for delivery, scope in fresh:
            if isinstance(scope, Scope):
                try:
                    self._call_each(
                        scope.ends,
                        "brokerkit_deliver_end",
                        delivery=delivery,
                        outcome="lease-lost",
                        error=scope.error,
                        scope=scope,
                    )
                finally:
                    self._ended(scope)


def _dead_lettered(broker: Any, deliveries: Sequence[Any], requeue: bool | None) -> list[Any]:
    """Those of nacked ``deliveries`` that went to the dead-letter topic, as the base
    rules say: all of them without requeue, else those at ``max_deliveries``."""
    from brokerkit._capabilities import Capability

    if requeue is None or Capability.DEAD_LETTER not in broker.capabilities:
        return []
    if not requeue:
        return list(deliveries)
    limit = broker.options.max_deliveries
    if limit is None:
        return []
    return [d for d in deliveries if d.attempt >= limit]
