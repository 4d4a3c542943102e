"""The event loop an asyncio Redis broker belongs to: the first that uses it.

redis.asyncio's connections, and the tasks, locks and events a broker keeps, belong
to the event loop they were made on, as nats-py's do (see the NATS backend's
``NatsClient.check_loop``). :func:`one_loop` makes a broker class claim the loop of
its first call and refuse every other:

- a call from another loop (a second loop running in another thread, or a new loop
  after the first one closed: a second ``asyncio.run()``, a test framework's new loop
  per test) raises :class:`~brokerkit.exceptions.Unsupported` before anything is sent;
- ``close()`` works from anywhere: from a second running loop it is carried out on
  the first; once the first loop has closed, without it: the sockets of the broker's
  connections are closed where they stand, its background tasks (lease renewals,
  reapers) are left to that loop, and what its subscriptions fetched is not handed
  back (the leases run out on their own).

Sync brokers are left as they are (their methods are no coroutines).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis

from brokerkit._acompat import on_loop
from brokerkit._capabilities import Capability
from brokerkit.backends.redis._durable_async import AsyncReplicaWait
from brokerkit.exceptions import Unsupported

__all__ = ["one_loop"]

_C = TypeVar("_C", bound=type)
_Method = Callable[..., Coroutine[Any, Any, Any]]

#: The primitives a broker's public methods run through (see AsyncBackend), but the
#: two that close: :func:`_unsubscribe_anywhere` and :func:`_close_anywhere`.
_PRIMITIVES = (
    "_publish",
    "_publish_delayed",
    "_subscribe",
    "_fetch",
    "_hand_back",
    "_ack",
    "_nack",
    "_nack_with",
    "_extend",
    "_inspect",
    "_list_topics",
    "_purge",
    "_suspend_renewals",
)
#: Where a broker keeps connections: its client (``make_client``'s), redis+stream's
#: settling client, redis+pubsub's own publishing connection, and on a cluster with
#: ``replicas`` the clients of the nodes its writes wait on.
_HOLDERS = ("_client", "_settle_client", "_own", "_durable", "_settle_durable")
#: How long a close from another loop waits for the close on the broker's own loop.
_CLOSE_WAIT = 60.0


def one_loop(cls: _C) -> _C:
    """Make the asyncio broker class ``cls`` keep to the first loop that uses it (see
    the module's docstring): its primitives, the public coroutines its own modules
    define (redis+stream's ``read``, redis+list's ``rescue``...), and its closing."""
    names = [*_PRIMITIVES]
    names += [
        name
        for klass in cls.__mro__
        if klass.__module__.startswith("brokerkit.backends.redis.")
        for name, value in vars(klass).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(value)
    ]
    for name in dict.fromkeys(names):
        method = getattr(cls, name, None)
        if inspect.iscoroutinefunction(method):
            setattr(cls, name, _checked(method))
    for name, wrap in (("_unsubscribe", _unsubscribe_anywhere), ("_close", _close_anywhere)):
        method = getattr(cls, name)
        if inspect.iscoroutinefunction(method):
            setattr(cls, name, wrap(method))
    return cls


def _checked(method: _Method) -> _Method:
    @functools.wraps(method)
    async def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        _claim(self)
        return await method(self, *args, **kwargs)

    return checked


def _unsubscribe_anywhere(unsubscribe: _Method) -> _Method:
    """A subscription's close: on its loop as it is; once that loop has closed, its own
    connection (redis+pubsub's listener's) dropped; list and stream keep theirs in the
    client's pool, dropped with the broker's."""

    @functools.wraps(unsubscribe)
    async def unsubscribed(self: Any, subscription: Any, unreturned: list[Any]) -> None:
        home = _home(self)
        if home is not None and home.is_closed():
            _drop_connections(getattr(subscription.state, "_conn", None))
            return
        _claim(self)
        await unsubscribe(self, subscription, unreturned)

    return unsubscribed


def _close_anywhere(close: _Method) -> _Method:
    """The broker's disconnect: here on its own loop (or if it never ran), carried out
    on its loop running in another thread, or without its loop once that has closed."""

    @functools.wraps(close)
    async def closed(self: Any) -> None:
        home = _home(self)
        if home is None or home is asyncio.get_running_loop():
            await close(self)
            return
        if home.is_running() and await on_loop(home, lambda: close(self), _CLOSE_WAIT):
            return
        if not home.is_closed():  # open but not running, or no answer in _CLOSE_WAIT
            raise _refusal(self, home, "be closed")
        _drop_connections(*(getattr(self, name, None) for name in _HOLDERS))

    return closed


def _home(broker: Any) -> asyncio.AbstractEventLoop | None:
    home: asyncio.AbstractEventLoop | None = vars(broker).get("_home_loop")
    return home


def _claim(broker: Any) -> None:
    """Make the running loop ``broker``'s if it has none yet; refuse another."""
    here = asyncio.get_running_loop()
    home = vars(broker).setdefault("_home_loop", here)  # (atomic: one claim wins)
    if home is not here:
        raise _refusal(broker, home, "be used")


def _refusal(broker: Any, home: asyncio.AbstractEventLoop, what: str) -> Unsupported:
    state = (
        "now closed"
        if home.is_closed()
        else "running in another thread"
        if home.is_running()
        else "open, not running"
    )
    return Unsupported(
        f"an asyncio Redis broker ({broker.url})",
        Capability(0),
        f"{what} from an event loop other than the one it belongs to: the first to use "
        f"it, {home!r}, {state} (redis-py's connections belong to that loop). Open one "
        "broker per event loop (per asyncio.run(), per test), or share the sync broker "
        "(brokerkit.connect), which any thread may use",
    )


def _drop_connections(*holders: Any) -> None:
    """Close the sockets of the connections ``holders`` keep, without their event loop
    (it has closed: asyncio closes a transport through its loop). A holder is a client
    ``make_client`` made (the connections of its pool; of a cluster's nodes; under
    Sentinel, the sentinels' too), a connection kept outside a pool, a replica wait
    (its clients of a cluster's nodes), or None."""
    for holder in holders:
        if holder is None:
            continue
        if isinstance(holder, aioredis.connection.AbstractConnection):
            _drop(holder)
        elif isinstance(holder, AsyncReplicaWait):
            _drop_connections(*holder._nodes.values())
        elif isinstance(holder, aioredis.RedisCluster):
            nodes: Any = holder.nodes_manager
            for node in [*nodes.startup_nodes.values(), *nodes.nodes_cache.values()]:
                _drop_connections(*node._connections)
            nodes.default_node = None  # closed, as its aclose() marks it
        else:
            pool: Any = holder.connection_pool
            _drop_connections(*pool._available_connections, *pool._in_use_connections)
            manager = getattr(pool, "sentinel_manager", None)
            _drop_connections(*(manager.sentinels if manager is not None else ()))


def _drop(connection: Any) -> None:
    """Close ``connection``'s socket where it stands, doing here what its closed loop
    would have done: the transport marked closing (so that its stream does not warn of
    it later), then the socket closed (under TLS, by the socket's transport beneath)."""
    writer, connection._reader, connection._writer = connection._writer, None, None
    if writer is None:
        return
    connection._parser.on_disconnect()
    transport: Any = writer.transport
    with contextlib.suppress(RuntimeError):  # "Event loop is closed", once marked closing
        transport.close()
    tls: Any = getattr(transport, "_ssl_protocol", None)
    beneath: Any = transport if tls is None else tls._transport
    if getattr(beneath, "_sock", None) is not None:
        with contextlib.suppress(RuntimeError):  # (a read waiting on the closed loop)
            beneath._call_connection_lost(None)
