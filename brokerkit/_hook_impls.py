"""Each plugin's implementation of a message hook, to be called on its own (see
:mod:`brokerkit._hooks`: pluggy's own call stops at the first implementation that
raises), and :func:`call_each`, which calls them so."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any, NamedTuple

import pluggy

from brokerkit._logging import delivery_fields, log_fields

__all__ = ["Impl", "call_each", "impls_of", "is_async", "name_async_hooks"]

log = logging.getLogger("brokerkit.hooks")


class Impl(NamedTuple):
    """One plugin's implementation of a message hook, ready to call on its own."""

    #: The implementation, or (a pluggy wrapper) a caller of just that plugin's.
    function: Callable[..., object]
    #: The hook arguments it takes positionally, by name; empty for a wrapper.
    argnames: tuple[str, ...]
    #: The keyword arguments it takes when given; ``None``: all (a wrapper's caller).
    kwargnames: tuple[str, ...] | None
    plugin_name: str


def impls_of(manager: pluggy.PluginManager, name: str) -> tuple[Impl, ...]:
    """The implementations of hook ``name``, in the order pluggy calls them."""
    caller = getattr(manager.hook, name, None)
    if caller is None:
        return ()
    hookimpls = caller.get_hookimpls()
    found: list[Impl] = []
    # pluggy calls the last of the list first: wrappers, tryfirst, the later
    # registered, trylast.
    for impl in reversed(hookimpls):
        if is_async(impl):
            continue  # never run: named when its plugin registered (see _hooks)
        if impl.hookwrapper or impl.wrapper:
            # A wrapper is a generator pluggy must drive: it is called through pluggy
            # around this implementation alone, so it too fails on its own. Alone for
            # good: a caller of the manager's hook (a subset of it) would call what is
            # registered at the call, skipping this wrapper once its plugin is
            # unregistered and calling a plugin registered since the operation started.
            found.append(Impl(_Wrapper(manager, name, impl), (), None, impl.plugin_name))
        else:
            found.append(
                Impl(impl.function, tuple(impl.argnames), tuple(impl.kwargnames), impl.plugin_name)
            )
    return tuple(found)


class _Wrapper:
    """Calls one wrapper implementation of a hook through pluggy, around nothing."""

    __slots__ = ("_hookexec", "_impls", "_name")

    def __init__(self, manager: pluggy.PluginManager, name: str, impl: pluggy.HookImpl) -> None:
        # the manager's executor: it honors add_hookcall_monitoring, as the hook does
        self._hookexec = manager._hookexec
        self._name = name
        self._impls = (impl,)

    def __call__(self, **kwargs: Any) -> None:
        self._hookexec(self._name, list(self._impls), kwargs, False)


def is_async(impl: Any) -> bool:
    """Whether the (non-wrapper) hook implementation ``impl`` is an ``async def``: the
    message hooks are plain functions, called from the sync and the asyncio API alike,
    so calling it would only make a coroutine nobody awaits."""
    if impl.hookwrapper or impl.wrapper:
        return False
    function = impl.function
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def call_each(
    impls: Sequence[Impl],
    name: str,
    kwargs: dict[str, Any],
    after: Callable[[str], None] | None = None,
) -> None:
    """Call ``impls``, implementations of hook ``name``, with ``kwargs``, each on its
    own: one that raises is logged on ``brokerkit.hooks`` and the others are still
    called; ``after(plugin name)`` runs after each. (The message hooks return nothing,
    so there are no results to gather.)"""
    for impl in impls:
        try:
            if impl.kwargnames is None:
                impl.function(**kwargs)
            elif impl.kwargnames:
                impl.function(
                    *[kwargs[arg] for arg in impl.argnames],
                    **{arg: kwargs[arg] for arg in impl.kwargnames if arg in kwargs},
                )
            else:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception:
            log.exception(
                "a %s hook failed (plugin %r); the other plugins and the message flow go on",
                name,
                impl.plugin_name,
                extra=_fields(kwargs),
            )
        if after is not None:
            after(impl.plugin_name)


def name_async_hooks(
    manager: pluggy.PluginManager, plugin: object, name: str, hooks: Collection[str]
) -> None:
    """Log, once, each of the message ``hooks`` that ``plugin`` (just registered as
    ``name``) implements as an ``async def``: it is never called (:func:`impls_of`
    leaves it out)."""
    for caller in manager.get_hookcallers(plugin) or ():
        if caller.name not in hooks:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and is_async(impl):
                log.error(
                    "plugin %r implements %s as an async def; it is not called: the "
                    "message hooks are plain functions, called from the sync and the "
                    "asyncio API alike (return at once; hand slow work to a task or thread)",
                    name,
                    caller.name,
                    extra=log_fields(),
                )


def _fields(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The log fields of a hook call's arguments."""
    if "delivery" in kwargs:
        return delivery_fields([kwargs["delivery"]])
    if "deliveries" in kwargs:
        return delivery_fields(kwargs["deliveries"])
    messages = kwargs.get("messages") or ()
    ids = ",".join(m.id for m in messages) or None
    return log_fields(kwargs.get("topic"), message_id=ids)
