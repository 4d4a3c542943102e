"""``nats+core://``: plain NATS subjects, the at-most-once pub/sub flavour.

Core NATS keeps nothing: a message reaches the subscribers listening when it is
published, each of them, in order, and nobody else. So the capabilities are those of
Redis pub/sub: FANOUT, ORDERED and PATTERNS (a glob over topics, matched here on the
topics under this broker's prefix), no persistence, no acks. Written once for asyncio;
the sync class runs it through the loop bridge.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from brokerkit._acompat import within
from brokerkit._broker_async import AsyncBroker
from brokerkit._capabilities import Capability
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._inspect import TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._subscription_async import AsyncSubscription
from brokerkit._topics import topic_matches
from brokerkit._url import BrokerURL
from brokerkit.aio import bridged
from brokerkit.backends.nats._client import NatsClient
from brokerkit.backends.nats._flush import SUBSCRIBE_WAIT, flush
from brokerkit.backends.nats._options import NatsCoreOptions
from brokerkit.backends.nats._wire import decode, encode_headers, subject_for, wire_size
from brokerkit.exceptions import ConnectionFailed, InvalidMessage

__all__ = ["AsyncNatsCoreBroker", "NatsCoreBroker"]

#: Messages a subscription keeps for its reader before it drops the oldest: a reader
#: that falls this far behind loses messages, as a slow core-NATS subscriber does.
BUFFER = 10_000


@dataclass
class _Listening:
    """One subscription's NATS subscription and the messages it has been handed;
    before them, what a fetch took and was handed back (its caller interrupted or
    cancelled: nobody had it), with its receipt, in order."""

    queue: asyncio.Queue[Msg] = field(default_factory=lambda: asyncio.Queue(BUFFER))
    nats: Any = None
    received: int = 0
    returned: collections.deque[tuple[Message, Any]] = field(default_factory=collections.deque)


class AsyncNatsCoreBroker(AsyncBroker):
    """Core NATS subjects: fan-out to whoever listens, at most once."""

    schemes: ClassVar[tuple[str, ...]] = ("nats+core",)
    capabilities: ClassVar[Capability] = (
        Capability.FANOUT | Capability.ORDERED | Capability.PATTERNS
    )
    Options: ClassVar[type[BrokerOptions]] = NatsCoreOptions
    options: NatsCoreOptions

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        self._client = NatsClient(
            url,
            connect_timeout=self.options.connect_timeout,
            reconnect_timeout=self.options.reconnect_timeout,
        )

    def _topic_of(self, subject: str) -> str:
        """The topic a delivery from ``subject`` names: what follows the prefix, its
        ``%`` tokens empty. Any other program's subject under the prefix, heard through a
        pattern, is as the connection shows it (``_subjects``: UTF-8 as it is, other bytes
        as ``\\xff`` escapes, as redis+pubsub shows a channel)."""
        tokens = subject.split(".")[1:]
        return ".".join("" if token == "%" else token for token in tokens)

    async def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Send ``messages``, then flush, once the connection is up (waiting for it
        while it is down, sending nothing meanwhile): returns once the server has read
        them (the PONG of a PING written after them).

        A ConnectionFailed raised before anything was sent says so ("nothing was
        sent"). One raised after (the connection lost during the publish, the flush
        unanswered) promises nothing either way: nothing is retried (core NATS cannot
        tell a message sent twice), what nats-py wrote to the socket reaches a server
        that reads it later (one frozen, a stalled network), and what it still held
        unwritten as the connection dropped is sent on the reconnection (not taken
        back from its buffer): at most once, not "not sent"."""
        nc = await self._client.connection()
        subject = subject_for(self.options.prefix, topic)
        sends = [(message, encode_headers(message)) for message in messages]
        for message, headers in sends:
            size = wire_size(message.payload, headers)
            if size > nc.max_payload:
                raise InvalidMessage(
                    f"message {message.id} is {size:,} bytes with its headers, more than this "
                    f"NATS server's max_payload ({nc.max_payload:,} bytes); nothing was sent"
                )
        deadline = time.monotonic() + self.options.reconnect_timeout
        await self._connected(nc, deadline, "nothing was sent", "publish to")
        try:
            for message, headers in sends:
                await nc.publish(subject, message.payload, headers=headers)
            # nats-py's flush is a round trip (PING, PONG) from a live connection only:
            # while it reconnects, flush() returns at once and what was published waits
            # in its buffer. So the connection must still be up as the flush starts (it
            # is lost only while nats-py yields: in a batch over its 2 MB buffer).
            if not nc.is_connected:
                raise ConnectionFailed(
                    f"the connection to NATS at {self._client.server} was lost while "
                    "publishing: some of the messages may have been sent, others not"
                )
            await self._flush(nc, deadline)
        except ConnectionFailed:
            raise
        except Exception as exc:
            raise ConnectionFailed(
                f"could not publish to NATS at {self._client.server}: {type(exc).__name__}"
            ) from None

    async def _flush(self, nc: Client, deadline: float) -> None:
        """Return once the server has read what was published (the PONG of a PING
        written after it), by ``deadline``.

        :raises ConnectionFailed: the connection was lost meanwhile (as nats-py notices
            it: it forgets the PONGs awaited when it reconnects, and the flush would
            wait on until ``deadline``)."""
        if not await self._round_trip(nc, deadline):
            raise ConnectionFailed(
                f"the connection to NATS at {self._client.server} was lost before "
                "the server confirmed the publish: its messages may have been "
                "sent, or not (they are not sent again)"
            )

    async def _round_trip(self, nc: Client, deadline: float) -> bool:
        """Whether the server answered, by ``deadline``, a PING written after all that
        this connection was given to send: False if the connection was not up, or was
        lost before the answer came (nats-py forgets the PONGs awaited as it
        reconnects: the flush would wait on until ``deadline``).

        :raises nats.errors.FlushTimeoutError: no answer by ``deadline``."""
        with self._client.watch_loss() as lost:

            async def pinged(timeout: int) -> bool:
                # (checked as the PING is written: a flush of a connection that is not
                # up returns at once, without a round trip)
                if lost.is_set() or not nc.is_connected:
                    return False
                await flush(nc, timeout)
                return True

            # (without the buffer written out, a lone flush's PING may precede it)
            for _ in range(1 if _write_buffered(nc) else 2):
                timeout = max(1, round(deadline - time.monotonic()))
                flushing = asyncio.ensure_future(pinged(timeout))
                noticed = asyncio.ensure_future(lost.wait())
                try:
                    await asyncio.wait({flushing, noticed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    noticed.cancel()
                    if not flushing.done():
                        flushing.cancel()
                if not flushing.done() or flushing.cancelled() or not flushing.result():
                    return False
        return True

    async def _connected(self, nc: Client, deadline: float, undone: str, doing: str) -> None:
        """Return once ``nc`` is connected; raise :class:`ConnectionFailed` (saying
        ``undone``: what was not done) if it is not by ``deadline``
        (``reconnect_timeout`` after the call began), or the broker closes meanwhile:
        nats-py would buffer a message published while it reconnects, and its flush
        would return as if the message were sent. (Woken by the close, as a JetStream
        request is: a look every so often came after the sync broker's close had
        cancelled what ran on its loop, and the publish raised CancelledError.)"""
        client = self._client
        if nc.is_connected or await client.wait_connected(deadline, client.closing_mark()):
            return
        if nc.is_closed or time.monotonic() < deadline:
            raise ConnectionFailed(f"the NATS connection to {client.server} is closed; {undone}")
        raise ConnectionFailed(
            f"could not {doing} NATS at {client.server}: not connected "
            f"within reconnect_timeout={self.options.reconnect_timeout}s; {undone}"
        )

    async def _subscribe(self, subscription: AsyncSubscription) -> None:
        """Subscribe, and return once the server has the interest: while the connection
        is down, once it is back (waiting up to ``reconnect_timeout``)."""
        nc = await self._client.connection()
        deadline = time.monotonic() + self.options.reconnect_timeout
        listening = _Listening()
        pattern = subscription.topic if subscription.pattern else None

        async def handed(msg: Msg) -> None:
            if pattern is not None and not topic_matches(pattern, self._topic_of(msg.subject)):
                return  # (not its: it takes no room in its buffer)
            if listening.queue.full():  # a reader this far behind loses the oldest
                listening.queue.get_nowait()
            listening.queue.put_nowait(msg)

        # A pattern is matched here, over every topic under the prefix: brokerkit's globs
        # are not NATS's token wildcards.
        subject = (
            f"{self.options.prefix}.>"
            if subscription.pattern
            else subject_for(self.options.prefix, subscription.topic)
        )
        listening.nats = await nc.subscribe(subject, cb=handed)
        try:
            await self._confirm_interest(nc, deadline)
        except BaseException:
            with contextlib.suppress(Exception):  # (not subscribed: nor left listening)
                await _unsubscribe(nc, listening.nats)
            raise
        subscription.state = listening

    async def _confirm_interest(self, nc: Client, deadline: float) -> None:
        """Return once the server has the interest just subscribed (the PONG of a PING
        written after the SUB). While the connection is down, wait for it until
        ``deadline`` (nats-py sends its SUBs again as it reconnects); a connection lost
        before the PONG came is waited for again, until ``deadline``.

        nats-py (2.16) leaves the SUB to its flusher task but writes a flush's PING at
        once, so a lone flush's PONG may come before the server read the SUB (a
        message published then was lost, 23 times in 300 on this machine): the SUB is
        written out first, or a second PING follows it (:meth:`_round_trip`).

        :raises ConnectionFailed: the connection not up by ``deadline``, the broker
            closed meanwhile, or the server not answering within
            :data:`~brokerkit.backends.nats._flush.SUBSCRIBE_WAIT` seconds.
        """
        client = self._client
        while True:
            await self._connected(nc, deadline, "not subscribed", "subscribe on")
            try:
                if await self._round_trip(nc, time.monotonic() + SUBSCRIBE_WAIT):
                    return
            except nats.errors.FlushTimeoutError:
                raise ConnectionFailed(
                    f"NATS at {client.server} did not confirm the subscription within "
                    f"{SUBSCRIBE_WAIT:g}s"
                ) from None
            except Exception as exc:
                raise ConnectionFailed(
                    f"could not subscribe on NATS at {client.server}: {type(exc).__name__}"
                ) from None
            if time.monotonic() >= deadline:
                raise ConnectionFailed(
                    f"could not subscribe on NATS at {client.server}: the connection was "
                    f"lost, and not back within reconnect_timeout="
                    f"{self.options.reconnect_timeout}s"
                )

    async def _fetch(
        self, subscription: AsyncSubscription, max_messages: int, timeout: float
    ) -> list[AsyncDelivery]:
        listening: _Listening = subscription.state
        deliveries: list[AsyncDelivery] = []
        deadline = time.monotonic() + timeout
        while len(deliveries) < max_messages and listening.returned:
            message, receipt = listening.returned.popleft()
            deliveries.append(AsyncDelivery(message, subscription=subscription, receipt=receipt))
        while len(deliveries) < max_messages:
            if listening.queue.empty() and deliveries:
                break
            wait = deadline - time.monotonic()
            try:
                msg = (
                    listening.queue.get_nowait()
                    if not listening.queue.empty() or wait <= 0
                    else await within(listening.queue.get(), wait)
                )
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            topic = self._topic_of(msg.subject)
            if subscription.pattern and not topic_matches(subscription.topic, topic):
                continue
            listening.received += 1
            message = decode(topic, msg.data, msg.headers, listening.received, time.time())
            deliveries.append(
                AsyncDelivery(message, subscription=subscription, receipt=listening.received)
            )
        return deliveries

    async def _hand_back(self, deliveries: list[AsyncDelivery]) -> None:
        """Put what a fetch took and nobody had (its receive interrupted or cancelled)
        back in front of its subscription's buffer, in order: the next receive gets it
        (core NATS keeps nothing to hand it back to)."""
        for delivery in reversed(deliveries):
            listening: _Listening | None = delivery.subscription.state
            if listening is not None and not delivery.subscription.closed:
                listening.returned.appendleft((delivery.message, delivery.receipt))
        self._mark(deliveries)

    async def _unsubscribe(
        self, subscription: AsyncSubscription, unreturned: list[AsyncDelivery]
    ) -> None:
        listening: _Listening | None = subscription.state
        self._mark(unreturned)
        if listening is not None and listening.nats is not None:
            with contextlib.suppress(Exception):  # the connection is gone: so is the interest
                await listening.nats.unsubscribe()

    async def _inspect(self, topic: str) -> TopicInfo:
        # Core NATS keeps nothing: there is never a length, a delivery in flight or a
        # dead letter to report.
        return TopicInfo(topic=topic, length=0, in_flight=0, dead_lettered=0)

    async def _purge(self, topic: str) -> int:
        return 0

    def _wake_waits(self) -> None:
        """The close begins: what waits for a lost connection gives up now."""
        self._client.interrupt()

    async def _close(self) -> None:
        await self._client.close()


def _write_buffered(nc: Client) -> bool:
    """Write out now what nats-py holds for its flusher task, so that the PING of a
    flush that follows comes after it: nats-py writes a flush's PING straight to the
    socket, ahead of the publishes (and subscribes) still in its buffer, and the PONG
    then confirms only the PING. Whether it did (False: a nats-py without these
    private attributes; flushing twice then puts a PING after them).

    Only while the connection is up (nats-py's status CONNECTED), else False, writing
    nothing: while nats-py reconnects, its transport is the lost one (what is written
    there goes nowhere, and nats-py would have nothing left to send on the
    reconnection) or a new one not yet past CONNECT (and a TLS upgrade)."""
    pending = getattr(nc, "_pending", None)
    transport = getattr(nc, "_transport", None)
    if not isinstance(pending, list) or transport is None or not nc.is_connected:
        return False
    if pending:
        transport.writelines(pending)
        nc._pending = []
        nc._pending_data_size = 0
    return True


NatsCoreBroker = bridged(AsyncNatsCoreBroker)


async def _unsubscribe(nc: Client, sub: Any) -> None:
    """Unsubscribe ``sub``, on the server too: while nats-py reconnects it sends no
    UNSUB (2.16), but the SUB it queued meanwhile goes out as it reconnects, and the
    server would keep an interest the client no longer knows (every matching message
    sent to it for as long as the connection lasts). So the UNSUB is queued behind it."""
    queued = nc.is_reconnecting
    await sub.unsubscribe()
    send = getattr(nc, "_send_unsubscribe", None)
    if queued and send is not None:
        await send(sub._id)
