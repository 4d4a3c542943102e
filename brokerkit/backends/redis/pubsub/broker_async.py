"""``redis+pubsub://``: Redis Pub/Sub channels and patterns, at most once.

A topic is a Redis channel, ``<prefix>:{<topic>}`` (or the topic itself with
``plain_channels=true``). ``publish`` is one ``PUBLISH``; every subscriber connected
at that moment receives it, and nobody else ever will: Redis keeps nothing. Each
subscription owns one connection (``SUBSCRIBE``, or ``PSUBSCRIBE`` for
``pattern=True``) that reconnects on its own and reports each gap in listening
(:class:`Gap`).

Written once, as the asyncio source ``broker_async.py`` on ``redis.asyncio``;
``broker.py``, the sync broker, is generated from it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import reprlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import redis.asyncio as aioredis

from brokerkit._acompat import Lock, acquire
from brokerkit._broker_async import AsyncBroker
from brokerkit._capabilities import Capability
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._inspect import TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._subscription_async import AsyncSubscription
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._client_async import Reconnector, make_client
from brokerkit.backends.redis._closing import CloseSignal, WakesOnClose
from brokerkit.backends.redis._connection import (
    note_url_reached,
    translate_errors,
    unpooled_connection,
)
from brokerkit.backends.redis._deployment import Deployment
from brokerkit.backends.redis._envelope import encode
from brokerkit.backends.redis._loops import one_loop
from brokerkit.backends.redis._options import DRIVER_QUERY_KEYS, MAX_PAYLOAD_BYTES
from brokerkit.backends.redis._stream_fields import escaped_text
from brokerkit.backends.redis.pubsub.decoding import decode_published
from brokerkit.backends.redis.pubsub.gap import AsyncGapReport, Gap
from brokerkit.backends.redis.pubsub.globs import redis_glob, redis_literal
from brokerkit.backends.redis.pubsub.listener_async import (
    DEFAULT_SOCKET_TIMEOUT,
    AsyncChannelListener,
)
from brokerkit.backends.redis.pubsub.options import Published, RedisPubSubOptions
from brokerkit.exceptions import BrokerClosed, DeliveryError

__all__ = ["AsyncRedisPubSubBroker"]

#: Where publish_many_counted collects the receiver counts of its own PUBLISHes
#: (per thread, and per task under asyncio).
_COUNTS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "brokerkit_pubsub_counts", default=None
)
#: How gaps() shows what it refused: a huge argument cut short.
_shown = reprlib.Repr()
_shown.maxstring = _shown.maxother = 120


@one_loop
class AsyncRedisPubSubBroker(WakesOnClose, AsyncBroker):
    """A broker on Redis Pub/Sub: fan-out to whoever listens, at most once.

    Promises: every subscriber connected when a message is published receives
    it once, in publish order (:attr:`~Capability.FANOUT`,
    :attr:`~Capability.ORDERED`), and subscriptions may be glob patterns
    (:attr:`~Capability.PATTERNS`). Nothing is stored: a message published while
    nobody listens, or while a subscriber is reconnecting, is lost. ``ack`` and
    ``nack`` only mark a delivery settled; groups, ``start`` and ``extend`` raise
    :class:`~brokerkit.Unsupported`. What a cancelled receive had already read is
    kept for the subscription's next receive, not lost.
    """

    schemes: ClassVar[tuple[str, ...]] = ("redis+pubsub", "rediss+pubsub")
    capabilities: ClassVar[Capability] = (
        Capability.FANOUT | Capability.ORDERED | Capability.PATTERNS
    )
    Options: ClassVar[type[BrokerOptions]] = RedisPubSubOptions
    driver_query_keys: ClassVar[frozenset[str]] = DRIVER_QUERY_KEYS
    max_payload_bytes: ClassVar[int | None] = MAX_PAYLOAD_BYTES
    options: RedisPubSubOptions

    #: Whether topics are shard channels (``SPUBLISH``/``SSUBSCRIBE``): on a cluster.
    sharded: ClassVar[bool] = False

    @classmethod
    def from_url(cls, url: BrokerURL | str, **options: Any) -> AsyncRedisPubSubBroker:
        """A broker for ``url``: on a Redis Cluster (``cluster=true``), an
        :class:`AsyncShardedRedisPubSubBroker`, whose capabilities lack PATTERNS."""
        parsed = BrokerURL.parse(url)
        built = cls.options_of(parsed, options)
        target = cls
        assert isinstance(built, RedisPubSubOptions)
        if Deployment.of(parsed, built).kind == "cluster" and not cls.sharded:
            target = AsyncShardedRedisPubSubBroker
        return target(parsed, built)

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        AsyncGapReport.check(self.options.on_gap)
        # No blocking command here: every read is bounded, so a frozen server fails a
        # publish (after reconnect_timeout) instead of hanging it. The reconnector does
        # all the retrying (the client's own would multiply the waits on a frozen server).
        self._client = make_client(
            url, self.options, retries=0, read_timeout=DEFAULT_SOCKET_TIMEOUT
        )
        # Told as the close begins: what retries against a lost server gives up then.
        self._close_signal = CloseSignal()
        self._reconnector = Reconnector(
            url, self.options.reconnect_timeout, closing=self._close_signal
        )
        self._deployment = Deployment.of(url, self.options)
        self._head = f"{self.options.prefix}:{{"
        self._head_bytes = self._head.encode()
        # Channel -> topic, for the channels deliveries came from.
        self._topics: dict[bytes, str] = {}
        # The connection publishes go through when nobody else is using it.
        self._own_lock = Lock()
        self._own: Any = None
        self._own_pid = 0
        self._pooled_publishes = "max_connections" not in url.query

    # -- channels -------------------------------------------------------------------

    def channel(self, topic: str) -> str:
        """The Redis channel ``topic`` is published on: ``<prefix>:{<topic>}``, or
        ``topic`` itself with ``plain_channels``. ``redis-cli PUBLISH`` to it reaches
        this backend's subscribers of ``topic``."""
        return topic if self.options.plain_channels else f"{self._head}{topic}}}"

    def channel_pattern(self, pattern: str) -> str:
        """The Redis glob a subscription to the topic glob ``pattern`` listens with:
        the channels of exactly the topics :func:`fnmatch.fnmatchcase` matches with
        ``pattern``, as on every other backend (:func:`~.globs.redis_glob`)."""
        glob = redis_glob(pattern)
        if self.options.plain_channels:
            return glob
        return f"{redis_literal(self._head)}{glob}{redis_literal('}')}"

    def _topic_of(self, channel: bytes) -> str:
        """The topic a delivery from ``channel`` names, one to one: the channel's
        topic part as :func:`~.._stream_fields.escaped_text` shows it. A valid topic
        (no backslash) is itself; bytes that are not UTF-8 (a channel another program
        published to, heard through a pattern) are ``\\xff`` escapes, and a name that
        reads as escaped has its backslashes doubled, so no two channels name one
        topic."""
        head = self._head_bytes
        if not self.options.plain_channels and channel.startswith(head) and channel[-1:] == b"}":
            channel = channel[len(head) : -1]
        return escaped_text(channel)

    # -- publishing -----------------------------------------------------------------

    async def publish_counted(
        self,
        topic: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Published:
        """Publish one message, as :meth:`publish` does, and say how many
        subscribers received it.

        :returns: the message id and the number of receivers.
        """
        published = await self.publish_many_counted(
            topic, (body,), headers=headers, content_type=content_type
        )
        return published[0]

    async def publish_many_counted(
        self,
        topic: str,
        bodies: Iterable[Any],
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> list[Published]:
        """Publish several messages, as :meth:`publish_many` does (one round trip),
        and say how many subscribers received each."""
        sink: list[int] = []
        token = _COUNTS.set(sink)
        try:
            ids = await self.publish_many(topic, bodies, headers=headers, content_type=content_type)
        finally:
            _COUNTS.reset(token)
        return [Published(i, n) for i, n in zip(ids, sink, strict=True)]

    async def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        channel = self.channel(topic)
        if self.options.raw:
            commands = [("PUBLISH", channel, message.payload) for message in messages]
        else:
            commands = [("PUBLISH", channel, encode(message)) for message in messages]
        send = self._send_sharded if self.sharded else self._send
        counts = await self._reconnector.call(lambda: send(commands), topic=topic)
        sink = _COUNTS.get()
        if sink is not None:
            sink.extend(int(n) for n in counts)

    async def _send(self, commands: list[tuple[str, str, bytes]]) -> list[Any]:
        """The replies to ``commands``, sent in one write.

        What ``Redis.publish`` and a pipeline do, without redis-py's per-command
        bookkeeping: on the broker's own connection when nobody else is using it,
        else on one from the client's pool. The broker's own connection is not one of
        the pool's; when the URL caps the pool (``max_connections``), publishes wait
        for the broker's own connection rather than take the pool's slots, which are
        left to ``inspect`` (a pool at its cap fails a command at once). It is tried
        once (the client has ``retries=0``): a dropped connection raises, and the
        caller (:meth:`_publish`) sends the batch again through the broker's
        :class:`Reconnector`, with backoff, for up to ``reconnect_timeout`` (so a batch
        whose reply was lost may be delivered twice).
        """
        pool: Any = self._client.connection_pool  # redis-py's pools are partly untyped
        if not self._pooled_publishes:
            async with self._own_lock:
                return await self._exchange_own(pool, commands)
        if await acquire(self._own_lock, 0):
            try:
                return await self._exchange_own(pool, commands)
            finally:
                self._own_lock.release()
        conn = await pool.get_connection(*_GET_CONNECTION_ARGS)
        try:
            self._refuse_if_closed()
            return await _exchange(conn, commands)
        finally:
            if self.closed:  # the close may have emptied the pool before this
                await conn.disconnect()
            await pool.release(conn)

    async def _exchange_own(self, pool: Any, commands: list[tuple[str, str, bytes]]) -> list[Any]:
        """``commands`` on the broker's own connection; the caller holds its lock.

        :raises BrokerClosed: the broker was closed since the publish began: a
            connection made now would outlive the close.
        """
        self._refuse_if_closed()
        if self._own is None or self._own_pid != os.getpid():
            self._own = unpooled_connection(pool)
            self._own_pid = os.getpid()
        return await _exchange(self._own, commands)

    def _refuse_if_closed(self) -> None:
        """Refuse to send once the broker is closed: a publish that began before the
        close (from another thread, or a hook) would reconnect a connection the close
        has let go, and leave it open. :meth:`close` marks the broker closed before it
        disconnects, and disconnects the own connection under its lock."""
        if self.closed:
            raise BrokerClosed(f"the broker {self.url} was closed during the publish")

    async def _send_sharded(self, commands: list[tuple[str, str, bytes]]) -> list[Any]:
        """SPUBLISH each message to the node that serves its channel's slot, in one
        pipeline (redis-py's cluster client routes it and follows MOVED)."""
        self._refuse_if_closed()
        pipe: Any
        async with self._client.pipeline(transaction=False) as pipe:
            for _, channel, data in commands:
                pipe.execute_command("SPUBLISH", channel, data)
            return list(await pipe.execute())

    async def _locate(self, channel: str) -> tuple[str, int]:
        """Where a subscription to ``channel`` connects now: the node serving its slot
        (the cluster's map reloaded: it may be after a failover or a slot move)."""
        cluster: Any = self._client
        await cluster.nodes_manager.initialize()
        # The cluster answered: a node that does not (a master failing over) is waited for.
        note_url_reached(self.url)
        node = cluster.get_node_from_key(channel)
        return str(node.host), int(node.port)

    async def _locate_master(self) -> tuple[str, int]:
        """The master the sentinels name now."""
        pool: Any = self._client.connection_pool
        host, port = await pool.get_master_address()
        return str(host), int(port)

    # -- consuming ------------------------------------------------------------------

    async def _subscribe(self, subscription: AsyncSubscription) -> None:
        name = (
            self.channel_pattern(subscription.topic)
            if subscription.pattern
            else self.channel(subscription.topic)
        )
        locate: Callable[[], Awaitable[tuple[str, int]]] | None = None
        if self.sharded:
            locate = functools.partial(self._locate, name)
        elif self._deployment.kind == "sentinel":
            locate = self._locate_master
        listener = AsyncChannelListener(
            self.url,
            name.encode(),
            pattern=subscription.pattern,
            topic=subscription.topic,
            consumer=subscription.consumer,
            reconnect_timeout=self.options.reconnect_timeout,
            ping_interval=self.options.ping_interval,
            sharded=self.sharded,
            locate=locate,
            closing=self._close_signal,
        )
        try:
            await listener.open()
        except BaseException:
            await listener.close()
            raise
        subscription.state = listener

    async def _fetch(
        self, subscription: AsyncSubscription, max_messages: int, timeout: float
    ) -> list[AsyncDelivery]:
        listener: AsyncChannelListener = subscription.state
        received, gap = await listener.read(max_messages, timeout)
        if gap is not None and self.options.on_gap is not None:
            await AsyncGapReport.tell(self.options.on_gap, gap)
        topics = self._topics
        deliveries = []
        # Each delivery's receipt is its place in the subscription's stream, so that
        # what a cancelled receive hands back goes back in order (see _hand_back).
        position = listener.read_count
        listener.read_count += len(received)
        for channel, data in received:
            topic = topics.get(channel)
            if topic is None:
                topic = self._topic_of(channel)
                if len(topics) >= _TOPIC_CACHE_SIZE:
                    topics.clear()  # many channels through patterns: start afresh
                topics[channel] = topic
            deliveries.append(
                AsyncDelivery(
                    decode_published(topic, data), subscription=subscription, receipt=position
                )
            )
            position += 1
        return deliveries

    async def _hand_back(self, deliveries: list[AsyncDelivery]) -> None:
        """Keep what a cancelled receive had read for its subscription's next
        receives, in the order it was received, ahead of anything read after it;
        drop it if the subscription is closed (at most once: nothing can be requeued
        on the server).

        The deliveries are back in the subscription before anything is awaited, so
        nothing the subscription reads later can be handed out ahead of them.
        """
        kept: dict[int, list[AsyncDelivery]] = {}
        for delivery in deliveries:
            if delivery.subscription.closed:
                delivery._mark_settled()
            else:
                kept.setdefault(id(delivery.subscription), []).append(delivery)
        for returned in kept.values():
            buffer = returned[0].subscription._buffer
            merged = sorted([*buffer, *returned], key=_position)
            buffer.clear()
            buffer.extend(merged)
        for returned in kept.values():
            # A receive may be waiting in a read of its own meanwhile: end it now.
            listener: AsyncChannelListener = returned[0].subscription.state
            await listener.wake()

    def _wake_fetches(self, subscription: AsyncSubscription) -> None:
        # A receive waiting in a read of the subscription's connection returns at once
        # (see AsyncChannelListener.nudge), so that the close does not wait out its read.
        listener = subscription.state
        if isinstance(listener, AsyncChannelListener):
            listener.nudge()

    async def _unsubscribe(
        self, subscription: AsyncSubscription, unreturned: list[AsyncDelivery]
    ) -> None:
        # Fetched-but-unreturned deliveries are dropped: at most once, nothing to hand back.
        listener: AsyncChannelListener = subscription.state
        await listener.close()

    def gaps(self, subscription: AsyncSubscription) -> tuple[Gap, ...]:
        """The gaps ``subscription`` has had so far, oldest first: the pull-style
        twin of the ``on_gap`` option.

        :raises DeliveryError: ``subscription`` is not a subscription of this broker
            (another broker's, or not a subscription at all).
        """
        state = getattr(subscription, "state", None)
        if getattr(subscription, "broker", None) is not self or not isinstance(
            state, AsyncChannelListener
        ):
            raise DeliveryError(
                f"gaps() takes a subscription of {self!r} (one its subscribe() returned), "
                f"got {_shown.repr(subscription)}"
            )
        return tuple(state.gaps)

    # -- management -----------------------------------------------------------------

    async def _inspect(self, topic: str) -> TopicInfo:
        channel = self.channel(topic)
        with translate_errors(self.url, topic):
            if self.sharded:  # asked of the node that serves the channel's slot
                host, port = await self._locate(channel)
                cluster: Any = self._client
                numsub = await cluster.execute_command(
                    "PUBSUB SHARDNUMSUB", channel, target_nodes=cluster.get_node(host, port)
                )
                numpat = 0
            else:
                numsub = await self._client.pubsub_numsub(channel)
                numpat = await self._client.pubsub_numpat()
        subscribers = int(numsub[0][1]) if numsub else 0
        return TopicInfo(
            topic=topic,
            length=0,
            details={
                "channel": channel,
                "subscribers": subscribers,
                "server_pattern_subscriptions": int(numpat),
            },
        )

    async def _purge(self, topic: str) -> int:
        return 0  # Pub/Sub stores nothing.

    async def _close(self) -> None:
        async with self._own_lock:
            if self._own is not None:
                await self._own.disconnect()
                self._own = None
        await self._client.aclose()


class AsyncShardedRedisPubSubBroker(AsyncRedisPubSubBroker):
    """``redis+pubsub://`` on a Redis Cluster: each topic is a shard channel
    (``SPUBLISH``/``SSUBSCRIBE``, Redis 7), served by the node that holds its slot.

    A subscription follows its slot: when the slot moves or its master fails over,
    Redis drops the subscription and it resubscribes where the slot lives now,
    reporting the gap as after any lost connection. ``publish_counted`` counts the
    subscribers of the channel's shard, which are all its subscribers. Patterns are
    not shardable (a pattern spans every slot): PATTERNS is not among this class's
    capabilities, and a pattern subscription is refused with
    :class:`~brokerkit.exceptions.Unsupported`.
    """

    capabilities: ClassVar[Capability] = Capability.FANOUT | Capability.ORDERED
    sharded: ClassVar[bool] = True


def _position(delivery: AsyncDelivery) -> int:
    """Where ``delivery`` came in its subscription's stream (its receipt)."""
    return int(delivery.receipt)


#: Channels whose topic names a broker remembers (more only with patterns).
_TOPIC_CACHE_SIZE = 4096

#: redis-py before 5.3 wants a command name for ConnectionPool.get_connection.
_GET_CONNECTION_ARGS: tuple[str, ...] = (
    ()
    if inspect.signature(aioredis.ConnectionPool.get_connection).parameters["command_name"].default
    is not inspect.Parameter.empty
    else ("PUBLISH",)
)


async def _exchange(conn: Any, commands: list[tuple[str, str, bytes]]) -> list[Any]:
    """Send ``commands`` on ``conn`` and read their replies, retried on a dropped
    connection as ``conn.retry`` says."""
    packed = conn.pack_commands(commands)
    return await conn.retry.call_with_retry(  # type: ignore[no-any-return]
        lambda: _round_trip(conn, packed, len(commands)),
        lambda _error: conn.disconnect(),
    )


async def _round_trip(conn: Any, packed: list[bytes], replies: int) -> list[Any]:
    """Send ``packed`` and read ``replies`` replies. A connection that may hold
    unread replies (an error reply, an interrupted read) is closed: the next use
    reconnects, and never reads a stale reply."""
    try:
        if not conn.is_connected:
            # connect() first: send_packed_command's own connect would skip a
            # Sentinel-managed connection's lookup of the master (redis-py 8)
            await conn.connect()
        await conn.send_packed_command(packed)
        return [await conn.read_response() for _ in range(replies)]
    except BaseException:
        await conn.disconnect()
        raise
