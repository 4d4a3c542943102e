"""One broker's kombu connection: a lock around every use of it, reconnection with
kombu's backoff, the channels it publishes on (:mod:`._channels`), and the exchanges
and queues it declared (declaring them is :mod:`._topology`'s).

py-amqp connections are not thread-safe, and a broker is shared between threads (its
subscriptions, the lease reaper, publishers), so every frame goes out under
:attr:`Link.lock`. A call that finds the connection gone reconnects (for up to
``reconnect_timeout`` seconds) and, where that is safe, runs again; every channel,
and so every delivery tag handed out before, belongs to the old connection and is
dead: :attr:`Link.generation` counts connections so that readers notice.

A server that stops answering (a network cut, a TCP black hole) never closes the
connection, so every wait on the socket is bounded: AMQP heartbeats both ways, and a
socket timeout of two heartbeats on every read and write. A wait that runs out (or a
:meth:`Link.heartbeat` that finds the server silent that long) is a lost connection.

The threads that share a link share its outage too: the first to find the connection
lost reconnects, within one window of ``reconnect_timeout`` kept on the link, while
the others wait for the lock; if that reconnect gives up, those that were waiting
give up at once with it, rather than each starting a window of its own in turn.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import amqp.exceptions  # type: ignore[import-untyped]
import kombu.exceptions

from brokerkit._secret_options import hide_path
from brokerkit._url import BrokerURL
from brokerkit.backends.kombu._blocked import BlockedState, Deadline
from brokerkit.backends.kombu._channels import PublishingChannels
from brokerkit.backends.kombu._confirms import Confirms
from brokerkit.backends.kombu._connect_errors import connect_error
from brokerkit.backends.kombu._connection import kombu_connection
from brokerkit.backends.kombu._names import Names
from brokerkit.backends.kombu._options import KombuAMQPOptions
from brokerkit.backends.kombu._readable import read_wait, wait_readable
from brokerkit.backends.kombu._refusals import channel_error
from brokerkit.backends.kombu._topology import Topology
from brokerkit.exceptions import BrokerClosed, BrokerError, ConnectionFailed

__all__ = ["ConnectionLost", "Link"]

_T = TypeVar("_T")

#: How long :meth:`Link.halt` waits for another thread to let go of the connection
#: before it shuts the socket under that thread (one stuck on a silent server).
_HALT_WAIT = 2.0
#: The longest a close waits for RabbitMQ's ``connection.close-ok``.
_CLOSE_WAIT = 2.0
#: How long :meth:`Link.heartbeat` waits for the lock (the thread holding it reads
#: the socket itself, and checks the heartbeats as it does).
_TICK_WAIT = 0.2
#: How often a thread waiting for the lock checks that the reconnect holding it has
#: not overrun its window (the wait itself ends as soon as the lock is free).
_LOCK_CHECK = 0.25
#: The most frames one :meth:`Link.heartbeat` dispatches before it checks.
_TICK_FRAMES = 1000
#: Seconds after a publish ran out of ``publish_timeout`` (none confirmed since) in
#: which the dead letters nobody asked for (the lease reaper's, a receive's) are not
#: published (see :meth:`Link.recent_timeout`).
ALARM_QUIET = 60.0


class Link(PublishingChannels, Topology):
    """The connection of one broker, with what hangs off it."""

    def __init__(self, url: BrokerURL, options: KombuAMQPOptions, name: str) -> None:
        self.url = url
        self.options = options
        self.names = Names(options.prefix)
        #: Held around every use of the connection or one of its channels.
        self.lock = threading.RLock()
        #: Counts connections (and moves on when one is found lost): a channel from
        #: an older generation is dead.
        self.generation = 0
        self._connection = kombu_connection(url, options, name)
        self.confirms = Confirms()
        self._declared: set[str] = set()
        #: Every exchange and queue this link declared, over all generations.
        self.created_exchanges: set[str] = set()
        self.created_queues: set[str] = set()
        #: Whether RabbitMQ blocked the connection (a resource alarm: see ._blocked).
        self.blocked = BlockedState()
        #: When (``time.monotonic()``) a publish last ran out of ``publish_timeout``,
        #: None once one is confirmed (see :meth:`recent_timeout`).
        self.timed_out: float | None = None
        #: RabbitMQ's ``max_message_size``, once a refusal has told it.
        self.max_message_size: int | None = None
        #: Called (under the lock) each time the connection is found lost and dropped,
        #: once :attr:`generation` has moved on: what was fetched from it is void now.
        self.on_drop: Callable[[], None] | None = None
        #: Set by :meth:`halt`: the broker is closing, nothing reconnects any more.
        self._halted = threading.Event()
        #: When the reconnect under way gives up (``reconnect_timeout`` after the loss
        #: was found); None while connected.
        self._deadline: float | None = None
        #: When the last reconnect gave up, and with what: a call that waited for the
        #: lock meanwhile raises it at once instead of starting a window of its own.
        self._gave_up: tuple[float, ConnectionFailed] | None = None
        #: Every wait on the socket, in seconds: a server that sends nothing for two
        #: heartbeats (it sends one every half heartbeat when idle) is gone.
        self.io_timeout = 2.0 * options.heartbeat
        self._errors = tuple(self._connection.connection_errors) + tuple(
            self._connection.recoverable_connection_errors
        )
        try:
            self.call(lambda: None)  # connect now, so that a bad URL fails in connect()
        except BaseException:
            self.close()
            raise

    # -- calls --------------------------------------------------------------------

    def call(
        self,
        action: Callable[[], _T],
        *,
        on_channel_error: Callable[[], None] | None = None,
        reconnect: bool = True,
    ) -> _T:
        """Run ``action`` under the lock, connected. When the connection is lost (the
        server closed it, or sent nothing for two heartbeats) it reconnects and runs
        ``action`` once more (every channel, and every delivery tag, of the old
        connection is dead by then: callers check :attr:`generation`). Without
        ``reconnect``, a lost connection (found gone before ``action``, or lost
        during it) raises :class:`ConnectionLost` at once.

        When RabbitMQ closes a channel instead (a refused declaration, a deleted
        queue), py-amqp reopens it in place, without its confirm mode or consumers:
        the publisher channel is dropped, ``on_channel_error`` runs (a reader drops
        its channel and leases), and the error is raised as brokerkit's.

        :raises ConnectionFailed: no connection within ``reconnect_timeout``.
        :raises ConnectionLost: without ``reconnect``, the connection was lost.
        :raises BrokerClosed: the broker is closing (see :meth:`halt`).
        :raises IncompatibleTopic: RabbitMQ refused a declaration.
        :raises InvalidMessage: RabbitMQ refused a message over its max_message_size.
        """
        arrived = time.monotonic()
        self._acquire()
        try:
            if self.blocked.reason is not None:
                self._drop()  # (RabbitMQ reads nothing of it meanwhile: see ._blocked)
            if not self._connection.connected:
                if not reconnect:
                    raise self._gone()
                self._reconnect(arrived)
            try:
                return self._translate(action, on_channel_error)
            except _Lost as lost:
                self._drop()
                if not reconnect:
                    raise self._gone() from lost.__cause__
            self._reconnect(arrived)
            try:
                return self._translate(action, on_channel_error)
            except _Lost as lost:
                self._drop()
                raise ConnectionFailed(
                    f"lost the connection to {self._server()} again just after reconnecting: "
                    f"{self._hide(repr(lost.__cause__))}"
                ) from None
        finally:
            self.lock.release()

    def _acquire(self) -> None:
        """Take the lock. Another thread may hold it while it reconnects: waiting for
        that is waiting for this call's own reconnect, in the same window; if that
        thread overruns the window (and the connection attempt it may have started at
        its end), this call gives up rather than wait on.

        :raises ConnectionFailed: the thread reconnecting overran its window.
        """
        while not self.lock.acquire(timeout=_LOCK_CHECK):
            deadline = self._deadline
            overrun = self.options.connect_timeout + _HALT_WAIT
            if deadline is not None and time.monotonic() > deadline + overrun:
                raise ConnectionFailed(
                    f"cannot connect to {self._server()} within "
                    f"reconnect_timeout={self.options.reconnect_timeout}s: another thread "
                    "is still trying, past that"
                )

    def _gone(self) -> BrokerError:
        if self._halted.is_set():
            return BrokerClosed(f"the broker {self._server()} is closed")
        return ConnectionLost(f"the connection to {self._server()} was lost")

    def _translate(
        self, action: Callable[[], _T], on_channel_error: Callable[[], None] | None
    ) -> _T:
        try:
            return action()
        except amqp.exceptions.ChannelError as exc:
            self.drop_publisher()
            self._declared.clear()
            if on_channel_error is not None:
                on_channel_error()
            raise self._channel_error(exc) from exc
        except self._errors as exc:
            # A socket timeout too: a server silent for two heartbeats is gone (the
            # waits that may time out, drain's, never raise one).
            raise _Lost() from exc

    def _channel_error(self, exc: Any) -> BrokerError:
        text = self._hide(getattr(exc, "reply_text", "") or str(exc))
        error, limit = channel_error(exc, text, self._server())
        if limit is not None:
            self.max_message_size = limit
        return error

    def _drop(self) -> None:
        """Forget the connection (lost): close its socket, no handshake. Its channels
        read closed from now on, and :attr:`generation` moves on at once: a lease of it
        is stale before anything reconnects (and :attr:`on_drop` is told)."""
        self.forget_channels()
        self._declared.clear()
        self.generation += 1
        with contextlib.suppress(Exception):  # it is being thrown away
            sock = self._socket()
            if sock is not None:
                # Not waiting for a TLS goodbye (close_notify) from a server that
                # may be gone: py-amqp's collect would, as long as the timeout says.
                sock.settimeout(0)
            self._connection.collect()
        if self.on_drop is not None:
            self.on_drop()

    def _reconnect(self, arrived: float) -> None:
        """Connect again, within the window of the outage (``reconnect_timeout`` from
        the first attempt after the loss was found). A call that ``arrived`` before the
        last reconnect gave up (it waited for the lock meanwhile) gives up at once.

        :raises ConnectionFailed: no connection within the window.
        :raises BrokerClosed: the broker is closing.
        """
        self._drop()
        if self._halted.is_set():
            raise self._gone()
        gave_up = self._gave_up
        if gave_up is not None and gave_up[0] >= arrived:
            raise ConnectionFailed(
                f"{gave_up[1]} (another call gave up reconnecting while this one waited)"
            )
        now = time.monotonic()
        if self._deadline is None or now >= self._deadline:
            # (reconnect_timeout=0: one attempt, as on the other backends, not no limit)
            self._deadline = now + self.options.reconnect_timeout
        try:
            self._connect_again()
        except ConnectionFailed as exc:
            self._deadline = None
            self._gave_up = (time.monotonic(), exc)
            raise
        self._deadline = None
        self._gave_up = None

    def _connect_again(self) -> None:
        """kombu's ``ensure_connection``, with backoff, for what is left of the window."""

        def check(exc: Exception, interval: float) -> None:
            # kombu retries what it takes for a passing fault; these are not.
            if self._halted.is_set():
                raise _Abandoned(self._gone())
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise _Abandoned(
                    ConnectionFailed(
                        f"the TLS certificate of {self._server()} was refused: "
                        f"{self._hide(str(exc.verify_message or exc))}"
                    )
                )

        try:
            deadline = self._deadline
            self._connection.ensure_connection(
                errback=check,
                max_retries=None,
                interval_start=0.05,
                interval_step=0.25,
                interval_max=2.0,
                # What is left of the window (kombu tries once even with very little).
                timeout=None if deadline is None else max(deadline - time.monotonic(), 0.001),
            )
        except Exception as exc:  # kombu re-raises driver errors as its own types
            if isinstance(exc, _Abandoned):
                raise exc.error from None
            if isinstance(exc, BrokerError):
                raise
            # (kombu retried what it raises as its OperationalError until the window
            # ran out; a refusal it raises as it came, at once)
            retried = isinstance(exc, kombu.exceptions.OperationalError)
            raise connect_error(
                exc, self.url, self.options.reconnect_timeout, retried=retried, hide=self._hide
            ) from None
        if self._halted.is_set():  # closed while this connected
            self._drop()
            raise self._gone()
        self.blocked.watch(self._connection._connection)
        # Every read and write from now on (py-amqp's own waits have none).
        sock = self._socket()
        if sock is not None:
            sock.settimeout(self.io_timeout)
        self.generation += 1

    def _socket(self) -> socket.socket | None:
        """The connection's socket, if it has one (safe without the lock: py-amqp's
        own ``sock`` property would connect)."""
        transport = getattr(self._connection._connection, "_transport", None)
        sock = getattr(transport, "sock", None)
        return sock if isinstance(sock, socket.socket) else None

    def _server(self) -> str:
        return self.url.render()

    def _hide(self, text: str) -> str:
        """A driver's or RabbitMQ's ``text`` with the vhost masked where it holds a
        secret option (``token=x``): RabbitMQ echoes it ('NOT_ALLOWED - vhost token=x
        not found'), and it is shown as ``str(url)`` shows it."""
        return hide_path(text, self.url)

    # -- channels -----------------------------------------------------------------

    def channel(self) -> Any:
        """A new channel of the current connection (call under the lock). Bodies come
        as sent: py-amqp would decode one whose ``content_encoding`` names a text
        encoding (another program's ``utf-16``, ``latin-1``) into a str, which reached
        the application re-encoded in UTF-8."""
        channel = self._connection.channel()
        channel.auto_decode = False
        return channel

    def frame_max(self) -> int:
        """The largest frame of the connection, in bytes, as RabbitMQ set it in the
        handshake (call within :meth:`call`: connected)."""
        return int(self._connection._connection.frame_max)

    def recent_timeout(self) -> ConnectionFailed | None:
        """Why not to publish a dead letter nobody asked for (the lease reaper's, a
        receive's) now: a publish ran out
        of ``publish_timeout`` within the last :data:`ALARM_QUIET` seconds and none
        was confirmed since (a memory or disk alarm, likely still on, or a server slow
        to store or commit); or None."""
        at = self.timed_out
        if at is None:
            return None
        ago = time.monotonic() - at
        if ago >= ALARM_QUIET:
            return None
        return ConnectionFailed(
            f"a publish to RabbitMQ on {self._server()} ran out of publish_timeout="
            f"{self.options.publish_timeout:g}s {ago:.0f}s ago, none confirmed since "
            "(a memory or disk alarm, or a server slow to store or commit?): dead letters "
            "nobody asked for are not published "
            f"for {ALARM_QUIET:g}s after that"
        )

    def deadline(self) -> Deadline:
        """A deadline of ``publish_timeout`` from now for a publish's socket reads and
        writes (see :mod:`._blocked`)."""
        return Deadline(self.options.publish_timeout, self.io_timeout, self._socket)

    def read_frame(self) -> None:
        """Read one frame and dispatch it (call under the lock)."""
        self._connection._connection.blocking_read(None)

    def lost(self, exc: BaseException) -> bool:
        """Whether ``exc``, raised by py-amqp within :meth:`call`, says the connection
        is lost (which :meth:`call` would answer by running the action again)."""
        return isinstance(exc, self._errors)

    def abandon(self) -> None:
        """Drop the connection (call under the lock): the next call connects anew."""
        self._drop()

    def drain(self, timeout: float) -> bool:
        """Read frames for up to ``timeout`` seconds, dispatching deliveries to the
        channels' consumer callbacks; whether something came (it returns early then).
        Call under the lock.

        With no ``timeout``, only what came already (see :func:`._readable.read_wait`).

        When nothing came, it sends a heartbeat if one is due, and raises the lost
        connection (through :meth:`call`) of a server silent for two heartbeats.
        """
        wait = read_wait(self._socket(), timeout)
        try:
            if wait is None:  # (nothing came)
                raise TimeoutError
            self._connection.drain_events(timeout=wait)
        except TimeoutError:  # (socket.timeout)
            self._connection.heartbeat_check()
            return False
        return True

    def await_frames(self, seconds: float) -> None:
        """Wait, holding no lock, up to ``seconds`` for the connection's socket to have
        something to read (see :mod:`._readable`); the caller then reads it under the
        lock (:meth:`take_in`). Returns at once without a connection (the next call
        reconnects)."""
        sock = self._socket()
        if sock is None or not self._connection.connected:
            return
        wait_readable(sock, seconds)

    def take_in(self) -> None:
        """Dispatch what the server sent meanwhile, without waiting (call under the
        lock, within :meth:`call`): a connection the server closed, or whose end of
        stream the network already delivered, is found lost now (a write into it may
        still succeed, and tell nothing), as is a server silent for two heartbeats."""
        for _ in range(_TICK_FRAMES):
            if not self.drain(0):
                return

    def heartbeat(self) -> None:
        """Take in what the server sent meanwhile, send a heartbeat if one is due, and
        drop the connection of a server silent for two heartbeats (the next call
        reconnects). Called by the reaper about every second; skipped while another
        thread uses the connection (it does the same as it reads)."""
        if not self.lock.acquire(timeout=_TICK_WAIT):
            return
        try:
            if self._halted.is_set() or not self._connection.connected:
                return

            def tick() -> None:
                for _ in range(_TICK_FRAMES):
                    if not self.drain(0):
                        return
                self._connection.heartbeat_check()

            with contextlib.suppress(_Lost, BrokerError):
                try:
                    self._translate(tick, None)
                except _Lost:
                    self._drop()
                    raise
        finally:
            self.lock.release()

    def halt(self) -> None:
        """The broker is closing: nothing reconnects any more, and a thread stuck on
        the connection (a server that stopped answering, not yet found silent for two
        heartbeats) has its socket shut under it, so that its call ends now."""
        self._halted.set()
        if self.lock.acquire(timeout=_HALT_WAIT):
            self.lock.release()
            return
        sock = self._socket()
        if sock is not None:
            # socket.socket's own shutdown: an SSLSocket's would also drop the TLS
            # object under the thread that reads it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the connection; the server hands back every unsettled delivery. Ends
        in bounded time, also when the server stopped answering."""
        self.halt()
        # A thread whose socket halt() shut ends its call soon; one reconnecting gives
        # up after the attempt under way.
        if not self.lock.acquire(timeout=self.options.connect_timeout + _HALT_WAIT):
            return  # that thread drops what it connected (see _reconnect)
        try:
            sock = self._socket()
            if sock is not None and self._connection.connected:
                with contextlib.suppress(Exception):
                    sock.settimeout(_CLOSE_WAIT)
                    self._connection.close()
            self._drop()
        finally:
            self.lock.release()


class ConnectionLost(ConnectionFailed):
    """A call made without reconnecting (:meth:`Link.call` with ``reconnect=False``)
    found the connection lost: every channel of it, and every delivery they held,
    went with it (RabbitMQ hands those back)."""


class _Lost(Exception):
    """Internal: the connection went away during a call."""


class _Abandoned(Exception):
    """Internal: stop reconnecting, and raise :attr:`error` instead."""

    def __init__(self, error: BrokerError) -> None:
        super().__init__(str(error))
        self.error = error
