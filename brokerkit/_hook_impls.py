"""Each plugin's implementation of a message hook, to be called on its own (see
:mod:`brokerkit._hooks`: pluggy's own call stops at the first implementation that
raises)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import pluggy

__all__ = ["Impl", "impls_of", "is_async"]


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
            # around this plugin alone, so it too fails on its own.
            others = [other.plugin for other in hookimpls if other is not impl]
            whole = manager.subset_hook_caller(name, others)
            found.append(Impl(whole, (), None, impl.plugin_name))
        else:
            found.append(
                Impl(impl.function, tuple(impl.argnames), tuple(impl.kwargnames), impl.plugin_name)
            )
    return tuple(found)


def is_async(impl: Any) -> bool:
    """Whether the (non-wrapper) hook implementation ``impl`` is an ``async def``: the
    message hooks are plain functions, called from the sync and the asyncio API alike,
    so calling it would only make a coroutine nobody awaits."""
    if impl.hookwrapper or impl.wrapper:
        return False
    function = impl.function
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
