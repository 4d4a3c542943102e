"""The NATS connection's outages: counting them (:attr:`Outages.generation`), waiting
one out (:meth:`Outages.wait_connected`), watching for one during a flush
(:meth:`Outages.watch_loss`), and giving such waits up as the broker's close begins
(:meth:`Outages.interrupt`, :meth:`Outages.closing_mark`).

:class:`Outages` is the part of :class:`~brokerkit.backends.nats._client.NatsClient`
that does it, from nats-py's disconnected and reconnected callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from nats.aio.client import Client

from brokerkit._acompat import within
from brokerkit._close_calls import by_the_close

__all__ = ["RETRY_WAIT", "Outages"]

#: Seconds between two tries to reach the server.
RETRY_WAIT = 0.25


class Outages:
    """Outages of :class:`NatsClient`'s connection: it sets ``_nc``, ``_closing`` and
    ``_loop``, and calls :meth:`_init_outages` for the rest of the attributes below."""

    _nc: Client | None
    _closing: bool
    #: The event loop the connection belongs to (nats-py's reader, its futures).
    _loop: asyncio.AbstractEventLoop | None
    #: Set when the connection comes back: wakes what waits for it.
    _back: asyncio.Event | None
    #: How many times :meth:`interrupt` was called: a wait for the connection, or a
    #: request, under way as it moves gives up.
    _interrupts: int
    #: The connection's losses (nats-py's disconnected callbacks) and the new
    #: connections it has made since the first (its count): see :attr:`generation`.
    _losses: int
    _returns: int
    #: Set, each, as nats-py loses the connection: see :meth:`watch_loss`.
    _loss_watchers: set[asyncio.Event]

    if TYPE_CHECKING:

        def check_loop(self) -> None: ...

    def _init_outages(self) -> None:
        """No outage yet, nothing waiting for the end of one."""
        self._back = None
        self._interrupts = 0
        self._losses = 0
        self._returns = 0
        self._loss_watchers = set()

    def _lost(self) -> None:
        """nats-py lost the connection (its disconnected callback)."""
        self._losses += 1
        for lost in self._loss_watchers:
            lost.set()
        if self._back is not None:
            self._back.clear()

    def _returned(self) -> None:
        """nats-py has the connection back (its reconnected callback; the generation
        moved already, as nats-py marked it connected)."""
        if self._back is not None:
            self._back.set()

    @property
    def generation(self) -> int:
        """Which connection to the server this is: it moves as nats-py loses the
        connection, and as it has a new one: once it marks that one connected (the
        server answered its first PING), from when what is sent goes out on it; not
        when it tells of it (its ``reconnected_cb``, a round trip later), so a pull
        sent in between is not taken for one lost with the connection before. What
        was leased on an earlier connection may be unknown to a server that
        restarted meanwhile.

        nats-py counts the new connections (``stats["reconnects"]``) as it marks each
        connected, before anything else can be sent: one that failed before it told
        of it counts too.
        """
        nc = self._nc
        if nc is not None:
            self._returns = max(self._returns, nc.stats.get("reconnects", 0))
        return self._losses + self._returns

    def interrupt(self) -> None:
        """Make what waits for the connection now give up (from any thread, at once):
        a :meth:`wait_connected` under way returns False, a request under way raises
        :class:`ConnectionFailed` (the broker's close begins: it waits for the calls
        under way, which would otherwise wait for the connection until
        ``reconnect_timeout``), and so does one that starts waiting afterwards, but
        for the close's own calls (its hand-backs), which wait as before."""
        self._interrupts += 1
        loop, back = self._loop, self._back
        if loop is None or back is None or loop.is_closed():
            return
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            back.set()
        else:
            with contextlib.suppress(RuntimeError):  # (that loop just closed)
                loop.call_soon_threadsafe(back.set)

    @property
    def interrupts(self) -> int:
        """How many times :meth:`interrupt` was called (see :meth:`wait_connected`)."""
        return self._interrupts

    async def wait_connected(self, until: float, since: int | None = None) -> bool:
        """Whether the connection is up, waiting for nats-py's reconnection until the
        monotonic time ``until`` at most (False at once if it is closed, or once
        :meth:`interrupt` is called: after the call whose :attr:`interrupts` count was
        ``since``, by default after this one began; :meth:`closing_mark` gives the
        ``since`` of a call that the close's wake-up ends whenever it came).

        :raises Unsupported: called from another loop than the connection's.
        """
        self.check_loop()
        if since is None:
            since = self._interrupts
        nc, back = self._nc, self._back
        while True:
            if nc is None or nc.is_closed or self._closing or self._interrupts != since:
                return False
            if nc.is_connected:
                return True
            left = until - time.monotonic()
            if left <= 0:
                return False
            if back is None:
                back = self._back = asyncio.Event()
            back.clear()  # (not connected now: set again by the next reconnection)
            with contextlib.suppress(asyncio.TimeoutError):
                # (bounded: nats-py marks the connection back at the server's first
                # PONG, and tells of it a round trip later)
                await within(back.wait(), min(left, RETRY_WAIT))

    @contextlib.contextmanager
    def watch_loss(self) -> Iterator[asyncio.Event]:
        """An event set if nats-py loses the connection while the block runs (it
        forgets the PONGs awaited then: a flush under way would wait out its timeout)."""
        lost = asyncio.Event()
        self._loss_watchers.add(lost)
        try:
            yield lost
        finally:
            self._loss_watchers.discard(lost)

    def closing_mark(self) -> int:
        """The ``since`` of :meth:`wait_connected` for a call that waits for the
        connection, or retries: 0 for any call but the close's own, which the close's
        wake-up ends whether it came before or after the call began (a call that
        passed the open check just before the close began must not wait on for
        ``reconnect_timeout``); the count now for the close's own calls
        (:func:`~brokerkit._close_calls.by_the_close`: its hand-backs), which only a
        later :meth:`interrupt` ends."""
        return self._interrupts if by_the_close() else 0
