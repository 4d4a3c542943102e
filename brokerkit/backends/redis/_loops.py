"""The event loop an asyncio Redis broker's connections belong to.

redis.asyncio's connections, and the asyncio locks, events and tasks a broker keeps,
belong to the event loop they were made on. :func:`one_loop` makes a broker class
claim the loop of its first call and look at every later call's loop before it does
anything:

- the same loop: on it goes;
- another loop, while the first one is still open (two threads, each running a
  loop): :class:`~brokerkit.exceptions.Unsupported`, nothing done, naming the loop
  the broker is bound to and what to do instead; a ``close()`` is carried out on the
  first loop (waited for here);
- another loop, the first one closed (a second ``asyncio.run()``, a test framework's
  new loop per test): the broker moves to this loop. What the closed loop left is let
  go without it: each connection's socket is closed where it stands and the
  connection opens again on its next command; the background work (lease renewals,
  reapers) starts again here at its next use; locks and events are made anew. Leases
  fetched on the closed loop are renewed here as before.

Sync brokers are left as they are (their methods are no coroutines).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from brokerkit._acompat import on_loop
from brokerkit._capabilities import Capability
from brokerkit.backends.redis._periodic_async import Periodic
from brokerkit.exceptions import Unsupported

__all__ = ["one_loop"]

_C = TypeVar("_C", bound=type)

#: The primitives a broker's public methods run through (see AsyncBackend).
_PRIMITIVES = (
    "_publish",
    "_publish_delayed",
    "_subscribe",
    "_fetch",
    "_unsubscribe",
    "_ack",
    "_nack",
    "_nack_with",
    "_extend",
    "_inspect",
    "_list_topics",
    "_purge",
    "_suspend_renewals",
)
#: How long a close from another loop waits for the close on the broker's own loop.
_CLOSE_WAIT = 60.0

_claiming = threading.Lock()
#: How far from the broker :func:`_let_go` looks (a cluster node's connections are
#: five attributes down: client, nodes manager, its nodes, a node, its connections).
_DEPTH = 6


def one_loop(cls: _C) -> _C:
    """Make the asyncio broker class ``cls`` check the loop of every call (see the
    module's docstring): its primitives, its own public coroutines, and its close."""
    names = [name for name in _PRIMITIVES if hasattr(cls, name)]
    names += [
        name
        for klass in cls.__mro__
        if klass.__module__.startswith("brokerkit.backends.redis")
        for name, value in vars(klass).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(value)
    ]
    for name in dict.fromkeys(names):
        method = getattr(cls, name)
        if inspect.iscoroutinefunction(method):
            setattr(cls, name, _checked(method))
    close = getattr(cls, "_close", None)
    if inspect.iscoroutinefunction(close):
        cls._close = _closed_at_home(close)  # type: ignore[attr-defined]
    return cls


def _checked(method: Callable[..., Coroutine[Any, Any, Any]]) -> Any:
    if getattr(method, "_one_loop", False):
        return method

    @functools.wraps(method)
    async def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        home = _enter(self)
        if home is not None:
            raise _refusal(self, home)
        return await method(self, *args, **kwargs)

    checked._one_loop = True  # type: ignore[attr-defined]
    return checked


def _closed_at_home(close: Callable[[Any], Coroutine[Any, Any, None]]) -> Any:
    @functools.wraps(close)
    async def closed(self: Any) -> None:
        home = _enter(self)
        if home is None:
            await close(self)
        elif not await on_loop(home, lambda: close(self), _CLOSE_WAIT):
            raise _refusal(self, home)  # its loop stopped meanwhile, or did not answer

    return closed


def _enter(broker: Any) -> asyncio.AbstractEventLoop | None:
    """Claim the running loop for ``broker`` if it has none, or moved to it if its loop
    is closed; the loop it belongs to if that is another one, still open."""
    here = asyncio.get_running_loop()
    state = vars(broker)
    if state.get("_home_loop") is here:
        return None
    with _claiming:
        home: asyncio.AbstractEventLoop | None = state.get("_home_loop")
        if home is here:
            return None
        if home is not None and not home.is_closed():
            return home
        if home is not None:
            _let_go(broker, home)
        state["_home_loop"] = here
        return None


def _refusal(broker: Any, home: asyncio.AbstractEventLoop) -> Unsupported:
    return Unsupported(
        f"an asyncio Redis broker ({broker.url})",
        Capability(0),
        f"be called from an event loop other than the one it belongs to ({home!r}, the "
        "first to use it, still open: redis-py's connections belong to it): open one "
        "broker per event loop, or share the sync broker (brokerkit.connect) between "
        "threads",
    )


def _let_go(broker: Any, dead: asyncio.AbstractEventLoop) -> None:
    """Let go of what ``broker`` holds of the closed loop ``dead``, without it."""
    seen: set[int] = set()
    for owner, name, value in _parts(broker, seen, depth=_DEPTH):
        if isinstance(value, Periodic):
            value.restart_elsewhere()
        elif isinstance(value, asyncio.Lock | asyncio.Event | asyncio.Condition):
            if getattr(value, "_loop", None) is dead:
                fresh = type(value)()
                if isinstance(value, asyncio.Event) and value.is_set():
                    fresh.set()  # type: ignore[union-attr]
                setattr(owner, name, fresh)
        elif _is_connection(value):
            _drop(value)


def _parts(obj: Any, seen: set[int], depth: int) -> Iterator[tuple[Any, str, Any]]:
    """(owner, attribute, value) for the attributes of ``obj`` and, ``depth`` levels
    down, of theirs (through lists, sets, deques and dicts' values too)."""
    if depth <= 0 or id(obj) in seen or not _ours(obj):
        return
    seen.add(id(obj))
    try:
        attributes = dict(vars(obj))
    except TypeError:  # no __dict__ (slots)
        attributes = {
            name: getattr(obj, name)
            for klass in type(obj).__mro__
            for name in getattr(klass, "__slots__", ())
            if hasattr(obj, name)
        }
    for name, value in attributes.items():
        if name == "_home_loop" or isinstance(value, str | bytes | int | float | type):
            continue
        yield obj, name, value
        if isinstance(value, list | tuple | set | frozenset) or _is_deque(value):
            items: list[Any] = list(value)
        elif isinstance(value, dict) and not name.startswith("__"):
            items = list(value.values())
        else:
            items = [value]
        for item in items:
            if item is not value:
                if _is_connection(item):
                    _drop(item)
                elif isinstance(item, Periodic):
                    item.restart_elsewhere()
            yield from _parts(item, seen, depth - 1)


def _ours(obj: Any) -> bool:
    """Whether ``obj`` is brokerkit's or redis-py's (what the walk looks into)."""
    module = type(obj).__module__
    return module.startswith(("brokerkit.", "redis.")) or module == "redis"


def _is_deque(value: Any) -> bool:
    import collections

    return isinstance(value, collections.deque)


def _is_connection(value: Any) -> bool:
    from redis.asyncio.connection import AbstractConnection

    return isinstance(value, AbstractConnection)


def _drop(connection: Any) -> None:
    """Close ``connection``'s socket where it stands (its loop is closed: its transport
    cannot be closed through it); its next command connects again."""
    writer = getattr(connection, "_writer", None)
    if writer is None:
        return
    transport = writer.transport
    sock = transport.get_extra_info("socket")
    sock = getattr(sock, "_sock", sock)  # (asyncio hands out a wrapper that cannot close)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
    with contextlib.suppress(Exception):
        connection._parser.on_disconnect()
    connection._reader = None
    connection._writer = None
