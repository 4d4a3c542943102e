"""Pulling from a durable JetStream consumer, one request at a time.

Every pull waits for its own end (all it asked for, or the server's 404/408 status),
so that no pull request is left open on the server to lease messages into an inbox
nobody reads; a ``no_wait`` one the server never ends (the group's ``MaxAckPending``
holds it up) has the reader move to a new inbox, which makes the server drop it.
A pull asks first without waiting (``no_wait``: whatever is there, up to the batch);
only when nothing is there does it wait, for one message, and then takes what else
is ready without waiting.

A pull that nobody answers (status 503, "no responders") means the group's durable
consumer is gone: deleted, or its stream was. It raises :class:`ConsumerGone`, for
the broker to make the consumer again.

No pull is sent while the connection is down: nats-py would buffer it and send it on
the reconnection, when nobody waits for what it leases any more (each such message
would be handed back, an attempt counted that no handler saw). A pull waits for the
reconnection instead, within its own timeout, and one under way when the connection
is lost ends at once (the server's answer went with the connection). One sent once
nats-py has the new connection is that one's, though nats-py has not told of it yet
(:attr:`NatsClient.generation`): its answer comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from brokerkit._acompat import within
from brokerkit.backends.nats._client import NatsClient
from brokerkit.backends.nats._socket import drain
from brokerkit.exceptions import PermissionDenied

if TYPE_CHECKING:
    from brokerkit._delivery_async import AsyncDelivery

__all__ = ["ConsumerGone", "Reader"]

#: Seconds past a pull's own expiry to wait for the server's end-of-pull status.
_SLACK = 1.0
# Status codes that end a pull request: no messages, request expired, and 409
# (consumer deleted, leadership change, too many waiting pulls...).
_ENDS = {"404", "408", "409"}
#: The status of a request nobody subscribes to: here, a consumer that does not exist.
_NO_RESPONDERS = "503"
#: Seconds between two looks at the connection while a pull waits.
_LOOK = 0.25


class ConsumerGone(Exception):
    """The durable consumer a pull asked does not exist (any more)."""


class Reader:
    """One subscription's inbox and pull requests.

    :ivar ack_wait: the consumer's AckWait in seconds (its visibility timeout).
    :ivar created: when the consumer was made, as the server says (see
        :attr:`~brokerkit.backends.nats._leases.Lease.created`), if known.
    :ivar kept: what a receive cut off while it fetched (cancelled, or timed out by
        ``asyncio.wait_for``; a sync receive interrupted) brought, in the order it
        came, for the subscription's next fetch to return before it pulls again (no
        ``-NAK``: no attempt counted), renewed for one ack wait at most unless a fetch
        comes (:attr:`~brokerkit.backends.nats._leases.Lease.kept_until`); its close
        hands back what is left (see
        :meth:`~brokerkit.backends.nats._handing_back.NatsHandingBack._hand_back`).
    """

    def __init__(self, client: NatsClient, next_subject: str) -> None:
        self._client = client
        self._nc: Client | None = None  # (the client's connection, from open on)
        self._next_subject = next_subject
        #: The durable consumer it pulls from (the last token of the pull subject).
        self.consumer = next_subject.rpartition(".")[2]
        self._inbox = ""
        #: What arrived in the inbox, with when (monotonic); None: the server refused
        #: a pull (see _refused).
        self._queue: asyncio.Queue[tuple[float, Msg] | None] = asyncio.Queue()
        self._sub: Subscription | None = None
        #: The inbox being moved from, and what came to it since (see _move).
        self._left: set[str] = set()
        self._late: list[Msg] = []
        self._refused: PermissionDenied | None = None
        self.ack_wait = 30.0
        self.created: str | None = None
        self.kept: list[AsyncDelivery] = []

    async def open(self) -> None:
        """Start listening on the inbox."""
        nc = self._nc = await self._client.connection()
        self._client.watch([self._next_subject], self._told_refused)
        try:
            await self._listen(nc)
        except BaseException:
            self._client.unwatch([self._next_subject], self._told_refused)
            raise

    async def _listen(self, nc: Client) -> None:
        """Listen on a new inbox (what came to one before stays queued).

        :raises Exception: nats-py's, if it cannot subscribe (the connection closed):
            the inbox listened to before is kept.
        """
        inbox = nc.new_inbox()

        async def arrived(msg: Msg) -> None:
            if inbox in self._left:
                self._late.append(msg)  # (to an inbox moved from: see _move)
            else:
                self._queue.put_nowait((time.monotonic(), msg))

        # (the watch is per reader: only the inbox is watched and unwatched here, the
        # pull subject from open to close)
        self._client.watch([inbox], self._told_refused)
        try:
            self._sub = await nc.subscribe(inbox, cb=arrived)
        except BaseException:
            self._client.unwatch([inbox], self._told_refused)
            raise
        self._inbox = inbox

    async def _move(self, nc: Client) -> None:
        """Move to a new inbox: the server drops a pull request whose inbox nobody
        listens to, rather than lease what it would bring (see :meth:`_request`).
        The old inbox is drained (within :data:`_SLACK` seconds): what the server
        leased to it before it heard of the move is a straggler, handed back."""
        old, inbox = self._sub, self._inbox
        self._left.add(inbox)
        try:
            await self._listen(nc)
        except Exception:  # (closed: no pull goes out any more)
            self._left.discard(inbox)
            return
        self._client.unwatch([inbox], self._told_refused)
        try:
            if old is not None:
                await drain(nc, old, _SLACK)
        finally:
            self._left.discard(inbox)

    def _told_refused(self, denied: PermissionDenied) -> None:
        """The server's permissions refused a pull of this group (of this reader's,
        or another's of the same group: they would refuse this one's too), or this
        inbox."""
        self._refused = denied
        self._queue.put_nowait(None)

    def stragglers(self) -> list[Msg]:
        """Messages that arrived after the pull that asked for them had given up."""
        found = [msg for msg in self._late if _status(msg) is None]
        self._late.clear()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None and _status(item[1]) is None:
                found.append(item[1])
        return found

    async def pull(
        self, batch: int, timeout: float, closed: Callable[[], bool]
    ) -> list[tuple[float, Msg, float | None]]:
        """Up to ``batch`` messages, waiting at most ``timeout`` seconds for the first
        (and for the connection, if it is down: nothing is pulled meanwhile); each with
        the monotonic time just before the request that leased it, and, if that
        request waited (the server then leased it some time later, as it sent it),
        when it arrived.

        :raises ConsumerGone: the consumer does not exist.
        :raises PermissionDenied: the server's permissions refuse the pull.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        if not await self._client.wait_connected(deadline):
            return []
        got = await self._request(batch, None)
        left = deadline - time.monotonic()
        if got or left <= 0 or closed():
            return got
        got = await self._request(1, left)
        if got and batch > 1:
            with contextlib.suppress(ConsumerGone):  # (the next pull finds out)
                got += await self._request(batch - 1, None)
        return got

    async def _request(
        self, batch: int, expires: float | None
    ) -> list[tuple[float, Msg, float | None]]:
        body: dict[str, object] = {"batch": batch}
        if expires is None:
            body["no_wait"] = True
        else:
            body["expires"] = max(int(expires * 1e9), 1_000_000)
        nc = self._nc
        if nc is None or not nc.is_connected:
            return []  # (buffered, it would be sent on the reconnection: see above)
        generation = self._client.generation  # (the connection it goes out on)
        sent = time.monotonic()
        try:
            await nc.publish(self._next_subject, json.dumps(body).encode(), reply=self._inbox)
        except Exception:  # reconnecting with a full buffer, or closed: nothing pulled
            return []
        deadline = sent + (expires or 0.0) + _SLACK
        got: list[tuple[float, Msg, float | None]] = []
        while len(got) < batch:
            left = deadline - time.monotonic()
            if left <= 0:
                # The end never came: what this pull brings later is a straggler. A
                # no_wait pull the group's MaxAckPending holds up (it holds that many,
                # or the batch is larger) is never ended: the server keeps it, and
                # leases to it as acks make room. Nobody listening, it drops it.
                if expires is None and nc.is_connected:
                    await self._move(nc)
                break
            if not nc.is_connected or self._client.generation != generation:
                break  # lost with the connection: its answer will never come
            try:
                item = await within(self._queue.get(), min(left, _LOOK))
            except asyncio.TimeoutError:
                continue
            if item is None:
                if self._refused is not None:
                    raise self._refused
                continue
            arrived, msg = item
            status = _status(msg)
            if status is None:
                got.append((sent, msg, None if expires is None else arrived))
                # (a large batch may take the server longer than _SLACK to send: its
                # end is awaited while it still comes)
                deadline = max(deadline, arrived + _SLACK)
            elif status == _NO_RESPONDERS and not got:
                raise ConsumerGone(self._next_subject)
            elif status in _ENDS or status == _NO_RESPONDERS:
                break
            # other statuses (100: heartbeat) do not end the pull
        return got

    async def close(self) -> None:
        """Stop listening."""
        self._client.unwatch([self._next_subject, self._inbox], self._told_refused)
        sub, self._sub = self._sub, None
        if sub is not None:
            # If the connection is gone, so is the subscription.
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def _status(msg: Msg) -> str | None:
    """The status code of a message the server sent about the pull itself, else None.

    A status (404, 408, 409, 100) has no reply subject; every JetStream delivery has
    one (``$JS.ACK...``), even one with an empty body and a ``Status`` header of its
    own, which any publisher can store: that one is a message, not the end of a pull.
    """
    if not msg.reply and msg.headers and not msg.data:
        status = msg.headers.get("Status")
        return str(status) if status is not None else None
    return None
