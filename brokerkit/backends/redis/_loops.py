"""The event loop an asyncio Redis broker belongs to: the first that uses it.

redis.asyncio's connections, and the tasks, locks and events a broker keeps, belong
to the event loop they were made on, as nats-py's do (see the NATS backend's
``NatsClient.check_loop``). :func:`one_loop` makes a broker class (and each subclass
of it) claim the loop of its first call and refuse every other:

- a call from another loop (a second loop running in another thread, or a new loop
  after the first one closed: a second ``asyncio.run()``, a test framework's new loop
  per test) raises :class:`~brokerkit.exceptions.Unsupported` before anything is sent;
- closing works from anywhere: a broker's ``close()``, and a subscription's. From a
  second running loop, it is carried out on the first (waited for a minute at most;
  then it goes on there, and a warning says so). When the first loop is not running
  (closed, or open and not running: driven by ``run_until_complete``, or at the end of
  ``asyncio.run()``: nothing would run the close there from here), without it: the
  sockets of the broker's connections are closed where they stand, its background
  work (lease renewals, reapers) is told to stop (it ends if that loop runs again),
  and what its subscriptions fetched is not handed back (the leases run out on their
  own; a warning says how many). A close never leaves the broker half-closed.

Sync brokers are left as they are (their methods are no coroutines).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis

from brokerkit._acompat import on_loop, shielded
from brokerkit._capabilities import Capability
from brokerkit._logging import log_fields, subscription_fields
from brokerkit.backends.redis._durable_async import AsyncReplicaWait
from brokerkit.exceptions import Unsupported

__all__ = ["one_loop"]

log = logging.getLogger("brokerkit.redis")

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
#: Where a broker keeps background work (:class:`Periodic`, a :class:`LeaseKeeper`'s
#: in its ``_beat``): lease renewals, redis+stream's reaper.
_BACKGROUND = ("_keeper", "_reaper")
#: How long a close from another loop waits for the close on the broker's own loop.
_CLOSE_WAIT = 60.0


def one_loop(cls: _C) -> _C:
    """Make the asyncio broker class ``cls`` keep to the first loop that uses it (see
    the module's docstring): its primitives, the public coroutines its own modules
    define (redis+stream's ``read``, redis+list's ``rescue``...), and its closing;
    and in each subclass of it, those the subclass defines (a public coroutine of its
    own, a primitive it overrides)."""
    _guard(
        cls,
        [
            name
            for klass in cls.__mro__
            if klass.__module__.startswith("brokerkit.backends.redis.")
            for name, value in vars(klass).items()
            if _public_coroutine(name, value)
        ],
    )
    owner: Any = cls

    def init_subclass(subclass: type, /, **kwargs: Any) -> None:
        super(owner, subclass).__init_subclass__(**kwargs)
        _guard(subclass, [name for name, v in vars(subclass).items() if _public_coroutine(name, v)])

    owner.__init_subclass__ = classmethod(init_subclass)
    return cls


def _public_coroutine(name: str, value: object) -> bool:
    """Whether a class's attribute ``name`` is a public coroutine function that keeps to
    the broker's loop: any but ``close``, which works from anywhere."""
    return not name.startswith("_") and name != "close" and inspect.iscoroutinefunction(value)


def _guard(cls: type, names: list[str]) -> None:
    """Wrap ``cls``'s primitives, closing ones and coroutines ``names``, but those
    wrapped already (inherited from a class wrapped before)."""
    for name in dict.fromkeys([*_PRIMITIVES, *_CLOSING, *names]):
        method = getattr(cls, name, None)
        if inspect.iscoroutinefunction(method) and not hasattr(method, "_one_loop"):
            guarded = _CLOSING.get(name, _checked)(method)
            guarded._one_loop = True  # type: ignore[attr-defined]
            setattr(cls, name, guarded)


def _checked(method: _Method) -> _Method:
    @functools.wraps(method)
    async def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        _claim(self)
        try:
            return await method(self, *args, **kwargs)
        finally:
            if vars(self).get("_let_go_without_loop"):  # closed without this loop while it waited:
                _close_without_loop(self)  # what it reconnected meanwhile let go of too
                _drop_connections(*(_listener(arg) for arg in args), shut=_ours(self))

    return checked


def _listener(arg: Any) -> Any:
    """A redis+pubsub subscription's own connection, if ``arg`` is such a subscription."""
    return getattr(getattr(arg, "state", None), "_conn", None)


def _unsubscribe_anywhere(unsubscribe: _Method) -> _Method:
    """A subscription's close, on the broker's loop (see :func:`_at_home`); without it,
    its own connection (redis+pubsub's listener's) dropped; list and stream keep
    theirs in the client's pool, dropped with the broker's."""

    @functools.wraps(unsubscribe)
    async def unsubscribed(self: Any, subscription: Any, unreturned: list[Any]) -> None:
        def without() -> None:
            _drop_connections(_listener(subscription), shut=_ours(self))
            if unreturned:
                log.warning(
                    "could not hand back %d delivery(ies) of %r: its broker's event loop, "
                    "%r, does not run (its connections belong to it); they come back "
                    "when their leases run out. Close the broker on its own loop, "
                    "before that loop stops, to hand them back at once",
                    len(unreturned),
                    subscription,
                    _home(self),
                    extra=subscription_fields(subscription, unreturned),
                )

        await _at_home(
            self,
            f"the close of {subscription!r}",
            lambda: unsubscribe(self, subscription, unreturned),
            without,
        )

    return unsubscribed


def _close_anywhere(close: _Method) -> _Method:
    """The broker's disconnect, on its loop (see :func:`_at_home`), or without it."""

    @functools.wraps(close)
    async def closed(self: Any) -> None:
        await _at_home(
            self, f"the close of {self!r}", lambda: close(self), lambda: _close_without_loop(self)
        )

    return closed


#: The closing primitives, and how each is wrapped.
_CLOSING: dict[str, Callable[[_Method], _Method]] = {
    "_unsubscribe": _unsubscribe_anywhere,
    "_close": _close_anywhere,
}


async def _at_home(
    broker: Any,
    what: str,
    work: Callable[[], Coroutine[Any, Any, None]],
    without: Callable[[], None],
) -> None:
    """``await work()`` on ``broker``'s loop: here when it is this one (or it has none);
    carried out on it when it runs in another thread, waited for here _CLOSE_WAIT s at
    most, after which it goes on there; ``without()`` here when it does not run (closed,
    or open but not running: nothing would carry the work out there from here), so
    that a close never leaves the broker half-closed."""
    home: Any = _home(broker)
    if home is None or home is asyncio.get_running_loop():
        await work()
        return
    let_go = started = False

    async def there() -> None:
        nonlocal started
        if let_go:  # (let go of without it meanwhile: its loop had stopped)
            return
        if home is asyncio.get_running_loop():
            await work()
        elif home.is_running():  # it started since on_loop looked: carried out there
            started = True
        else:  # not running: on_loop runs this here
            without()

    while await on_loop(home, lambda: shielded(there, broker._closers), _CLOSE_WAIT):
        if not started:
            return
        started = False
    if home.is_running():
        log.warning(
            "gave up waiting for %s on its event loop, %r, which runs in another thread "
            "and did not answer in %d s; it goes on there",
            what,
            home,
            _CLOSE_WAIT,
            extra=log_fields(),
        )
        return
    let_go = True
    without()


def _close_without_loop(broker: Any) -> None:
    """Let go of ``broker``'s connections and background work without its loop, which
    does not run: the sockets closed here, the work told to stop (it ends when that
    loop runs again, if it does)."""
    broker._let_go_without_loop = True
    _drop_connections(*(getattr(broker, name, None) for name in _HOLDERS), shut=_ours(broker))
    home: Any = _home(broker)
    for name in _BACKGROUND:
        work = getattr(broker, name, None)
        work = getattr(work, "_beat", work)
        if work is None:
            continue
        try:  # set on its loop, should it run again (an asyncio event is not thread-safe)
            home.call_soon_threadsafe(work._stopped.set)
        except (AttributeError, RuntimeError):  # (no loop, or a closed one: none waits)
            with contextlib.suppress(RuntimeError):
                work._stopped.set()


def _home(broker: Any) -> asyncio.AbstractEventLoop | None:
    home: asyncio.AbstractEventLoop | None = vars(broker).get("_home_loop")
    return home


def _claim(broker: Any) -> None:
    """Make the running loop ``broker``'s if it has none yet; refuse another."""
    here = asyncio.get_running_loop()
    vars(broker).setdefault("_home_pid", os.getpid())
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


def _ours(broker: Any) -> bool:
    """Whether this process is the one whose loop ``broker``'s connections belong to
    (not a child forked since, which shares their sockets with it)."""
    home: int = vars(broker).get("_home_pid", os.getpid())
    return home == os.getpid()


def _drop_connections(*holders: Any, shut: bool = True) -> None:
    """Close the sockets of the connections ``holders`` keep, without their event loop
    (it has closed: asyncio closes a transport through its loop). A holder is a client
    ``make_client`` made (the connections of its pool; of a cluster's nodes; under
    Sentinel, the sentinels' too), a connection kept outside a pool, a replica wait
    (its clients of a cluster's nodes), or None. ``shut``: whether a connection whose
    socket cannot be closed here (uvloop's) is shut down; not in a forked child, where
    that would end its parent's connection too (see :func:`_shut_down`)."""
    for holder in holders:
        if holder is None:
            continue
        if isinstance(holder, aioredis.connection.AbstractConnection):
            _drop(holder, shut)
        elif isinstance(holder, AsyncReplicaWait):
            _drop_connections(*holder._nodes.values(), shut=shut)
        elif isinstance(holder, aioredis.RedisCluster):
            nodes: Any = holder.nodes_manager
            for node in [*nodes.startup_nodes.values(), *nodes.nodes_cache.values()]:
                _drop_connections(*node._connections, shut=shut)
            nodes.default_node = None  # closed, as its aclose() marks it
        else:
            pool: Any = holder.connection_pool
            _drop_connections(*pool._available_connections, *pool._in_use_connections, shut=shut)
            manager = getattr(pool, "sentinel_manager", None)
            _drop_connections(*(manager.sentinels if manager is not None else ()), shut=shut)


def _drop(connection: Any, shut: bool = True) -> None:
    """Close ``connection``'s socket where it stands, doing here what its loop (which
    does not run) would do for ``transport.close()``, and leaving nothing for it to do
    if it runs again: the transport marked closing and lost (so that neither it nor its
    stream warns of it later), its socket out of the loop's selector, then closed
    (under TLS, by the socket's transport beneath, the TLS transport marked closed)."""
    writer, connection._reader, connection._writer = connection._writer, None, None
    if writer is None:
        return
    connection._parser.on_disconnect()
    tls: Any = getattr(writer.transport, "_ssl_protocol", None)
    beneath: Any = writer.transport if tls is None else tls._transport
    if not hasattr(beneath, "_sock"):  # not asyncio's own transport: uvloop's
        if shut:
            _shut_down(writer.transport)
        return
    if beneath._sock is None:
        return
    beneath._closing = True
    beneath._conn_lost += 1
    beneath._loop._remove_reader(beneath._sock_fd)  # (a closed loop has none)
    beneath._loop._remove_writer(beneath._sock_fd)
    with contextlib.suppress(RuntimeError):  # the protocol's callbacks, on a closed loop
        beneath._call_connection_lost(None)
    if tls is not None:  # (Python 3.10 does not mark it closed then: it would warn)
        writer.transport._closed = True


def _shut_down(transport: Any) -> None:
    """End the connection of ``transport``, one of another event loop than asyncio's
    own (uvloop's, whose socket libuv keeps: there is no ``_sock`` to close), without
    its loop: its socket shut down through a duplicate of its descriptor, so that the
    server sees it end. It ends the socket, not the descriptor: in a child forked
    since, it would end the parent's connection (the caller does not shut down there).
    The descriptor stays the transport's, for its loop to close when it runs again or
    closes (closed here, its number could be reused meanwhile by another file, which
    that loop would then close)."""
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(OSError, ValueError):  # (closed already: nothing to end)
        if sock is None or sock.fileno() < 0:
            return
        with socket.fromfd(sock.fileno(), sock.family, sock.type) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
