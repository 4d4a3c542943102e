"""The NATS connection of one broker: connecting, requests in order, and retries.

nats-py reconnects by itself (forever, here) and would buffer what is published while
it does, to send it once back: however late. Nothing here is published while the
connection is down; a request waits for the reconnection instead, and is sent (again)
only while it may still be: this module adds what brokerkit needs on top of nats-py:
many requests sent in order and answered together, a deadline after which a request
that keeps failing raises :class:`~brokerkit.ConnectionFailed` (never with the URL's
password or token in it), for a settle the time after which it must not reach the
server at all (its lease's end: :meth:`NatsClient.settle_all`), and a request the
server's permissions refuse failing at once with :class:`~brokerkit.PermissionDenied`
(the violations are read in ``_permissions``; the connection's losses and returns, and
what waits for them, are counted and woken in ``_outages``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from brokerkit._acompat import within
from brokerkit._capabilities import Capability
from brokerkit._logging import log_fields
from brokerkit._url import BrokerURL
from brokerkit.backends.nats._connecting import Attempts
from brokerkit.backends.nats._flush import flush
from brokerkit.backends.nats._nats_url import check_url, credentials
from brokerkit.backends.nats._outages import RETRY_WAIT, Outages
from brokerkit.backends.nats._permissions import Permissions
from brokerkit.backends.nats._server import ServerProcess
from brokerkit.backends.nats._socket import (
    CLOSE_WAIT,
    abort,
    drop_socket,
    end_reconnecting,
    withdraw,
)
from brokerkit.backends.nats._subjects import connect
from brokerkit.exceptions import ConnectionFailed, PermissionDenied, Unsupported

__all__ = [
    "CLOSE_WAIT",
    "CONSUMER_NOT_FOUND",
    "SHORT_WAIT",
    "STREAM_NOT_FOUND",
    "NatsClient",
    "Request",
]

log = logging.getLogger("brokerkit.nats")

#: One request: subject, payload, headers.
Request = tuple[str, bytes, "dict[str, str] | None"]
#: Told of the requests a first try left unanswered (their indices) and the monotonic
#: time by which to say, returns those to give up (see :meth:`NatsClient.settle_all`).
Unanswered = Callable[[list[int], float], Awaitable[list[int]]]

#: Seconds one try of a request waits for its reply before it is retried.
_TRY_TIMEOUT = 2.0
#: Seconds those wait instead for a server that left the last request unanswered.
SHORT_WAIT = 0.25

#: JetStream API error codes: no such consumer, no such stream.
CONSUMER_NOT_FOUND = 10014
STREAM_NOT_FOUND = 10059


class NatsClient(Outages, Permissions):
    """One nats-py connection, opened on first use, with an in-order request mux."""

    def __init__(self, url: BrokerURL, *, connect_timeout: float, reconnect_timeout: float):
        check_url(url)
        self._url = url
        self._connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self._nc: Client | None = None
        self._opening: asyncio.Lock | None = None
        #: The event loop the connection belongs to (nats-py's reader, its futures):
        #: the first to use this client; claimed under :attr:`_claiming`.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._claiming = threading.Lock()
        self._replies: Subscription | None = None
        self._inbox = ""
        #: The requests waiting for their reply, by token: subject and reply future.
        self._waiting: dict[str, tuple[str, asyncio.Future[Msg]]] = {}
        self._tokens = itertools.count()
        self._closing = False
        #: Whether the last request that got no reply in its time went without one
        #: from the server since (a frozen server, a stalled network): see :attr:`silent`.
        self._unanswered = False
        #: Who to tell of a permissions violation on a subject of theirs (by the
        #: subject lower-cased, as nats-py reports it; with the subject as it is):
        #: the readers, for their pulls and their inboxes.
        self._watchers: dict[str, list[tuple[str, Callable[[PermissionDenied], None]]]] = {}
        self._attempts = Attempts(self.server, url)
        self._init_outages()

    @property
    def server(self) -> str:
        """``host:port`` of the server (an IPv6 host in brackets), for messages (never
        the credentials) and for nats-py."""
        host = self._url.host or "localhost"
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self._url.port or 4222}"

    async def connection(self) -> Client:
        """The open connection; connects on first use.

        :raises ConnectionFailed: the server could not be reached.
        :raises Unsupported: called from an event loop other than the one that first
            used this client (nats-py's connection belongs to one loop).
        """
        self.check_loop()
        if self._nc is not None:
            return self._nc
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._nc is None:
                self._nc = await self._connect()
        return self._nc

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the connection belongs to (None before the first use)."""
        return self._loop

    def check_loop(self) -> None:
        """Claim the running loop for the connection on first use; refuse another.

        :raises Unsupported: called from another loop than the first to use it.
        """
        here = asyncio.get_running_loop()
        if self._loop is not here:
            self._claim(here)

    def drop(self) -> None:
        """Let go of the connection without its event loop (that loop is not running:
        its transport cannot be closed through it): the socket is closed, nothing
        sent, and nats-py's client marked closed."""
        self._closing = True
        nc, self._nc = self._nc, None
        self._waiting.clear()
        if nc is not None:
            nc._status = Client.CLOSED  # (nats-py reconnects a client that is not)
            drop_socket(nc)

    def _claim(self, here: asyncio.AbstractEventLoop) -> None:
        """Make ``here`` the connection's loop if it has none yet; refuse another."""
        with self._claiming:
            if self._loop is None:
                self._loop = here
            elif self._loop is not here:
                raise Unsupported(
                    f"an asyncio NATS broker (of {self.server})",
                    Capability(0),
                    "be called from an event loop other than the one that first used it "
                    "(nats-py's connection belongs to that loop): open one broker per "
                    "event loop, or share the sync broker (brokerkit.connect) between "
                    "threads",
                )

    async def _connect(self) -> Client:
        server = f"nats://{self.server}"
        self._back = asyncio.Event()
        self._attempts.connected()  # tried anew: what fails now is logged again

        async def on_error(exc: Exception) -> None:
            denied = self._permission_denied(exc)
            if denied is not None:
                log.warning("%s", denied, extra=log_fields())
            elif self._nc is None or not self._nc.is_connected:  # a try to connect
                self._attempts.failed(exc)
            else:
                text = self._attempts.text(exc)
                log.warning("NATS connection to %s: %s", self.server, text, extra=log_fields())

        async def on_disconnect() -> None:
            self._lost()
            if self._closing:
                return
            log.warning("NATS connection to %s lost; reconnecting", self.server, extra=log_fields())

        async def on_reconnect() -> None:
            self._attempts.connected()
            self._returned()
            log.info("NATS connection to %s is back", self.server, extra=log_fields())

        try:
            nc = await connect(  # (nats.connect's, reading any subject the server sends)
                servers=[server],
                **credentials(self._url),
                name="brokerkit",
                connect_timeout=max(1, round(self._connect_timeout)),
                # The first connection is tried for about connect_timeout seconds
                # (ConnectionFailed below); once connected, the client reconnects
                # forever (set just after).
                allow_reconnect=False,
                max_reconnect_attempts=max(1, round(self._connect_timeout / RETRY_WAIT)),
                reconnect_time_wait=RETRY_WAIT,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            )
        except Exception as exc:  # nats-py raises several kinds; none may leak the URL
            raise self._attempts.refusal(exc, max(1, round(self._connect_timeout))) from None
        self._attempts.connected()
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        self._inbox = nc.new_inbox()
        self._replies = await nc.subscribe(self._inbox + ".*", cb=self._on_reply)
        return nc

    def process(self) -> ServerProcess | None:
        """The server process the connection is to now (None while there is none, or
        if its ``INFO`` named no ``server_id``)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return None
        info: dict[str, Any] = getattr(nc, "_server_info", None) or {}
        server_id = info.get("server_id")
        if not isinstance(server_id, str) or not server_id:
            return None
        version = nc.connected_server_version
        try:
            release: tuple[int, int, int] | None = (version.major, version.minor, version.patch)
        except ValueError:  # not a semantic version
            release = None
        return ServerProcess(server_id, release if release != (0, 0, 0) else None)

    @property
    def silent(self) -> bool:
        """Whether the server left a request unanswered, and has answered none since:
        what is only worth a short wait (a hand-back, the close's flush) gets one."""
        return self._unanswered

    async def _on_reply(self, msg: Msg) -> None:
        self._unanswered = False
        waiting = self._waiting.pop(msg.subject.rpartition(".")[2], None)
        if waiting is not None and not waiting[1].done():
            waiting[1].set_result(msg)

    async def request_all(self, requests: Sequence[Request], what: str) -> list[Msg]:
        """Send ``requests`` in order and return their replies, in order.

        A request whose reply does not come is sent again (every request here is
        safe to repeat) until ``reconnect_timeout`` has passed; none is sent while
        the connection is down (it waits for the reconnection).

        :raises ConnectionFailed: some replies never came.
        :raises PermissionDenied: the server's permissions refused one.
        """
        replies = await self._exchange(requests, what, None, None)
        return [reply for reply in replies if reply is not None]

    async def settle_all(
        self,
        requests: Sequence[Request],
        what: str,
        until: Sequence[Callable[[], float]],
        *,
        wait: float | None = None,
        unanswered: Unanswered | None = None,
    ) -> list[Msg | None]:
        """:meth:`request_all` for requests that must never reach the server after a
        time: request ``i`` is sent, and sent again, only before the monotonic time
        ``until[i]()`` (asked before each send: a renewal may move it); past it, it is
        given up, and its reply is None: not sent at all, or sent in time but not
        answered (the server may or may not have it). Something of it that nats-py
        has not yet written out (the connection dropped as it was sent) is taken back.
        With ``wait``, every request still unanswered after that many seconds is
        given up too (None), rather than retried until ``reconnect_timeout``. With
        ``unanswered``, the requests the first try left unanswered on a connection
        that held are told of (their indices, and the monotonic time by which to
        answer): those of them it returns are given up (None), not sent again.

        :raises ConnectionFailed: some replies never came within ``reconnect_timeout``
            (without ``wait``), and their time had not run out.
        :raises PermissionDenied: the server's permissions refused one.
        """
        return await self._exchange(requests, what, until, wait, unanswered)

    async def _exchange(
        self,
        requests: Sequence[Request],
        what: str,
        until: Sequence[Callable[[], float]] | None,
        wait: float | None,
        unanswered: Unanswered | None = None,
    ) -> list[Msg | None]:
        since = self.closing_mark()
        nc = await self.connection()
        deadline = time.monotonic() + (self.reconnect_timeout if wait is None else wait)
        replies: list[Msg | None] = [None] * len(requests)
        given_up = [False] * len(requests)
        # Every reply subject each request was sent with, to take back what nats-py
        # still holds of one given up.
        sent_as: list[list[str]] = [[] for _ in requests]
        tried = False
        while True:
            now = time.monotonic()
            todo = []
            for index, reply in enumerate(replies):
                if reply is not None or given_up[index]:
                    continue
                if until is not None and now >= until[index]():
                    given_up[index] = True
                    withdraw(nc, sent_as[index])
                else:
                    todo.append(index)
            if not todo:
                return replies
            if now >= deadline:
                if wait is not None:
                    for index in todo:
                        withdraw(nc, sent_as[index])
                    return replies
                raise ConnectionFailed(
                    f"NATS at {self.server} did not answer to {what} within "
                    f"reconnect_timeout={self.reconnect_timeout}s"
                )
            if nc.is_closed or self._closing:
                raise ConnectionFailed(f"the NATS connection to {self.server} is closed")
            if self._interrupts != since and (tried or not nc.is_connected):
                # (one that began after the close began is sent once while connected)
                raise ConnectionFailed(
                    f"gave up on NATS at {self.server} to {what}: the broker is closing"
                )
            if not nc.is_connected:
                # Published now, it would be buffered and sent on the reconnection,
                # however late: wait for the reconnection instead (or for a time out,
                # or the close).
                wake = deadline
                if until is not None:
                    wake = min(deadline, *(until[index]() for index in todo))
                await self.wait_connected(wake, since)
                continue
            generation = self.generation
            late = await self._try(
                nc, requests, todo, until, replies, sent_as, deadline, keep=unanswered is not None
            )
            tried = True
            if late:
                assert unanswered is not None  # (else nothing is kept)
                # Asked once, after a first try the connection carried whole; a reply
                # that comes meanwhile is taken (the request is not sent again).
                asked = nc.is_connected and self.generation == generation
                try:
                    unheld = (
                        await unanswered([index for index, _, _ in late], deadline) if asked else []
                    )
                except BaseException:
                    with contextlib.suppress(PermissionDenied):
                        self._collect(late, replies)
                    raise
                self._collect(late, replies)
                for index in unheld:
                    if replies[index] is None:
                        given_up[index] = True
                        withdraw(nc, sent_as[index])
                if asked:
                    unanswered = None

    async def _try(
        self,
        nc: Client,
        requests: Sequence[Request],
        todo: list[int],
        until: Sequence[Callable[[], float]] | None,
        replies: list[Msg | None],
        sent_as: list[list[str]],
        deadline: float,
        *,
        keep: bool = False,
    ) -> list[tuple[int, str, asyncio.Future[Msg]]]:
        """Send the requests ``todo`` (those still in time, while connected) and wait
        for their replies (:data:`_TRY_TIMEOUT` at most), filling ``replies``. With
        ``keep``, those still unanswered are returned (index, token, future), still
        awaiting their reply, for the caller to :meth:`_collect`; else none is."""
        futures: list[tuple[int, str, asyncio.Future[Msg]]] = []
        try:
            for index in todo:
                if not nc.is_connected:
                    break  # (the rest waits for the reconnection)
                if until is not None and time.monotonic() >= until[index]():
                    continue  # (given up next round)
                subject, payload, headers = requests[index]
                token = str(next(self._tokens))
                reply = f"{self._inbox}.{token}"
                future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
                self._waiting[token] = (subject, future)
                futures.append((index, token, future))
                sent_as[index].append(reply)
                await nc.publish(subject, payload, reply=reply, headers=headers)
            if futures:
                wait = max(min(_TRY_TIMEOUT, deadline - time.monotonic()), 0.05)
                _, pending = await asyncio.wait([f for _, _, f in futures], timeout=wait)
                if pending and nc.is_connected:
                    self._unanswered = True
        except (nats.errors.OutboundBufferLimitError, nats.errors.ConnectionReconnectingError):
            pass  # the client is reconnecting: try again
        except BaseException as exc:
            with contextlib.suppress(PermissionDenied):
                self._collect(futures, replies)
            if isinstance(exc, nats.errors.ConnectionClosedError):
                raise ConnectionFailed(f"the NATS connection to {self.server} is closed") from None
            raise
        done: list[tuple[int, str, asyncio.Future[Msg]]] = []
        late: list[tuple[int, str, asyncio.Future[Msg]]] = []
        for entry in futures:
            (late if keep and not entry[2].done() else done).append(entry)
        try:
            self._collect(done, replies)
        except PermissionDenied:
            self._collect(late, replies)  # (none of them is done: raises nothing)
            raise
        return late

    def _collect(
        self, futures: list[tuple[int, str, asyncio.Future[Msg]]], replies: list[Msg | None]
    ) -> None:
        """Stop awaiting the replies ``futures`` await (index, token, future), putting
        those that came in ``replies``.

        :raises PermissionDenied: the server's permissions refused one.
        """
        denied: PermissionDenied | None = None
        for index, token, future in futures:
            self._waiting.pop(token, None)
            if future.done() and not future.cancelled():
                failure = future.exception()
                if isinstance(failure, PermissionDenied):
                    denied = denied or failure
                elif failure is None:
                    replies[index] = future.result()
            else:
                future.cancel()
        if denied is not None:
            raise denied

    async def api(self, subject: str, body: dict[str, Any] | None, what: str) -> dict[str, Any]:
        """One JetStream API call; its JSON reply (which may hold an ``error``)."""
        payload = json.dumps(body).encode() if body is not None else b""
        (reply,) = await self.request_all([(f"$JS.API.{subject}", payload, None)], what)
        if reply.headers and reply.headers.get("Status") == "503":
            raise ConnectionFailed(f"NATS at {self.server} has no JetStream (needed to {what})")
        result: dict[str, Any] = json.loads(reply.data or b"{}")
        return result

    async def close(self, by: float | None = None) -> None:
        """Close the connection: what was sent reaches the server first, where it
        answers within :data:`CLOSE_WAIT` seconds (or by the monotonic time ``by``);
        one that does not (gone, or not answering) has the connection dropped at once,
        what is buffered with it.

        Not nats-py's ``drain()``: cut short, it goes on to wait for a flush of its own
        (10 s), and leaves a future whose exception nobody retrieves. Every request
        here has had its reply, or been given up, by now: a PING's PONG says that the
        server has everything else too.
        """
        self._closing = True
        nc, self._nc = self._nc, None
        for _, future in self._waiting.values():
            future.cancel()
        self._waiting.clear()
        if self._back is not None:
            self._back.set()  # (what waits for the reconnection gives up)
        if nc is None or nc.is_closed:
            return
        wait = CLOSE_WAIT if by is None else by - time.monotonic()
        if self._unanswered:
            wait = min(wait, SHORT_WAIT)  # (it did not answer the last request)
        if wait > 0 and nc.is_connected:
            try:
                await flush(nc, wait)
            except Exception:  # not answering, or reconnecting: nothing will be read now
                abort(nc)
        else:  # no time left (what was handed back went unanswered), or reconnecting
            abort(nc)
        try:
            await within(nc.close(), CLOSE_WAIT)
        except Exception:
            abort(nc)
        await end_reconnecting(nc)
