"""``redis+pubsub://``: Redis Pub/Sub channels and patterns, at most once.

A topic is a Redis channel, ``<prefix>:{<topic>}`` (or the topic itself with
``plain_channels=true``). :meth:`~brokerkit.Broker.publish` is one ``PUBLISH``;
every subscriber connected at that moment receives it, and nobody else ever
will: Redis keeps nothing. Each :class:`~brokerkit.Subscription` owns one
connection (``SUBSCRIBE``, or ``PSUBSCRIBE`` for ``pattern=True``) that
reconnects on its own and reports each gap in listening (:class:`Gap`).
"""

from __future__ import annotations

import inspect
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import redis

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit._inspect import TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._subscription import Subscription
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._client import make_client
from brokerkit.backends.redis._connection import translate_errors
from brokerkit.backends.redis._envelope import decode, encode
from brokerkit.backends.redis._options import DRIVER_QUERY_KEYS, RedisOptions
from brokerkit.backends.redis._pubsub_listener import ChannelListener, Gap
from brokerkit.exceptions import DeliveryError, InvalidOption

__all__ = ["Gap", "Published", "RedisPubSubBroker", "RedisPubSubOptions"]


@dataclass(frozen=True)
class RedisPubSubOptions(RedisOptions):
    """Options of ``redis+pubsub://`` URLs (and the Redis options they share).

    ``visibility_timeout`` has no effect (there are no leases) and
    ``max_deliveries`` is refused (there are no redeliveries).
    """

    #: Publish the bare payload instead of brokerkit's envelope, so that any
    #: Redis client subscribed to the channel reads the body as it is. Headers,
    #: content type and message id are then not transmitted. Subscribers accept
    #: both forms whatever this says.
    raw: bool = False
    #: Use the topic itself as the channel name (``chat:room:42``) instead of
    #: ``<prefix>:{<topic>}``, to talk to programs that use plain channel names.
    plain_channels: bool = False
    #: Seconds of silence after which a subscriber PINGs Redis; no answer within
    #: as long again counts as a lost connection (0: never ping).
    ping_interval: float = 5.0
    #: Called with a :class:`Gap`, in the consuming thread, when a subscription
    #: has resubscribed after losing its connection, before any delivery received
    #: after the gap is returned. Keyword only.
    on_gap: Callable[[Gap], None] | None = None

    keyword_only: ClassVar[frozenset[str]] = frozenset({"on_gap"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_deliveries is not None:
            raise InvalidOption(
                "max_deliveries does not apply to redis+pubsub: a message is delivered at "
                "most once and never redelivered; use redis+stream or redis+list for retries"
            )
        if self.ping_interval < 0:
            raise InvalidOption(
                f"ping_interval must be 0 (off) or more seconds, got {self.ping_interval!r}"
            )
        if self.on_gap is not None and not callable(self.on_gap):
            raise InvalidOption(
                f"on_gap must be a callable taking a Gap, got {type(self.on_gap).__name__}"
            )


class Published(NamedTuple):
    """What :meth:`RedisPubSubBroker.publish_counted` reports about one message.

    :ivar id: the message id, as :meth:`~brokerkit.Broker.publish` returns it.
    :ivar receivers: how many subscriber connections Redis handed the message to
        (channel and pattern subscribers, on this server; on a cluster, on the
        node that served the PUBLISH). 0 means nobody heard it: it is gone.
    """

    id: str
    receivers: int


class RedisPubSubBroker(Broker):
    """A broker on Redis Pub/Sub: fan-out to whoever listens, at most once.

    Promises: every subscriber connected when a message is published receives
    it once, in publish order (:attr:`~Capability.FANOUT`,
    :attr:`~Capability.ORDERED`), and subscriptions may be glob patterns
    (:attr:`~Capability.PATTERNS`). Nothing is stored: a message published while
    nobody listens, or while a subscriber is reconnecting, is lost. ``ack`` and
    ``nack`` only mark a delivery settled; groups, ``start`` and ``extend`` raise
    :class:`~brokerkit.Unsupported`.
    """

    schemes: ClassVar[tuple[str, ...]] = ("redis+pubsub", "rediss+pubsub")
    capabilities: ClassVar[Capability] = (
        Capability.FANOUT | Capability.ORDERED | Capability.PATTERNS
    )
    Options: ClassVar[type[BrokerOptions]] = RedisPubSubOptions
    driver_query_keys: ClassVar[frozenset[str]] = DRIVER_QUERY_KEYS
    options: RedisPubSubOptions

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        self._client = make_client(url)
        self._head = f"{self.options.prefix}:{{"
        # publish_counted hands each thread's PUBLISH replies back through this.
        self._counts = threading.local()
        # Channel -> topic, for the channels deliveries came from.
        self._topics: dict[bytes, str] = {}
        # The connection publishes go through when no other thread holds it.
        self._own_lock = threading.Lock()
        self._own: Any = None
        self._own_pid = 0

    # -- channels -------------------------------------------------------------------

    def channel(self, topic: str) -> str:
        """The Redis channel ``topic`` is published on: ``<prefix>:{<topic>}``, or
        ``topic`` itself with ``plain_channels``. ``redis-cli PUBLISH`` to it reaches
        this backend's subscribers of ``topic``."""
        return topic if self.options.plain_channels else f"{self._head}{topic}}}"

    def _topic_of(self, channel: bytes) -> str:
        name = channel.decode("utf-8", errors="replace")
        if not self.options.plain_channels and name.startswith(self._head) and name[-1:] == "}":
            return name[len(self._head) : -1]
        return name

    # -- publishing -----------------------------------------------------------------

    def publish_counted(
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
        return self.publish_many_counted(
            topic, (body,), headers=headers, content_type=content_type
        )[0]

    def publish_many_counted(
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
        self._counts.sink = sink
        try:
            ids = self.publish_many(topic, bodies, headers=headers, content_type=content_type)
        finally:
            self._counts.sink = None
        return [Published(i, n) for i, n in zip(ids, sink, strict=True)]

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        channel = self.channel(topic)
        if self.options.raw:
            commands = [("PUBLISH", channel, message.payload) for message in messages]
        else:
            commands = [("PUBLISH", channel, encode(message)) for message in messages]
        try:
            counts = self._send(commands)
        except redis.RedisError as exc:
            with translate_errors(self.url, topic):
                raise exc
        sink = getattr(self._counts, "sink", None)
        if sink is not None:
            sink.extend(int(n) for n in counts)

    def _send(self, commands: list[tuple[str, str, bytes]]) -> list[Any]:
        """The replies to ``commands``, sent in one write.

        What ``Redis.publish`` and a pipeline do, without redis-py's per-command
        bookkeeping: on the broker's own connection when no other thread is using
        it, else on one from the client's pool. A dropped connection is retried as
        the client's ``retry`` says (so, as with redis-py, a retried batch may be
        delivered twice).
        """
        if self._own_lock.acquire(blocking=False):
            try:
                if self._own is None or self._own_pid != os.getpid():
                    self._own = self._client.connection_pool.make_connection()
                    self._own_pid = os.getpid()
                return _exchange(self._own, commands)
            finally:
                self._own_lock.release()
        pool = self._client.connection_pool
        conn = pool.get_connection(*_GET_CONNECTION_ARGS)
        try:
            return _exchange(conn, commands)
        finally:
            pool.release(conn)

    # -- consuming ------------------------------------------------------------------

    def _subscribe(self, subscription: Subscription) -> None:
        name = self.channel(subscription.topic)
        if subscription.pattern:
            # brokerkit's globs negate a set as fnmatch and the shell do, [!a];
            # Redis spells it [^a] (and reads [!a] as "! or a").
            name = name.replace("[!", "[^")
        listener = ChannelListener(
            self.url,
            name.encode(),
            pattern=subscription.pattern,
            topic=subscription.topic,
            consumer=subscription.consumer,
            reconnect_timeout=self.options.reconnect_timeout,
            ping_interval=self.options.ping_interval,
        )
        try:
            listener.open()
        except BaseException:
            listener.close()
            raise
        subscription.state = listener

    def _fetch(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        listener: ChannelListener = subscription.state
        received, gap = listener.read(max_messages, timeout)
        if gap is not None and self.options.on_gap is not None:
            self.options.on_gap(gap)
        topics = self._topics
        deliveries = []
        for channel, data in received:
            topic = topics.get(channel)
            if topic is None:
                topic = self._topic_of(channel)
                if len(topics) >= _TOPIC_CACHE_SIZE:
                    topics.clear()  # many channels through patterns: start afresh
                topics[channel] = topic
            deliveries.append(Delivery(decode_published(topic, data), subscription=subscription))
        return deliveries

    def _unsubscribe(self, subscription: Subscription, unreturned: list[Delivery]) -> None:
        # Fetched-but-unreturned deliveries are dropped: at most once, nothing to hand back.
        listener: ChannelListener = subscription.state
        listener.close()

    def gaps(self, subscription: Subscription) -> tuple[Gap, ...]:
        """The gaps ``subscription`` has had so far, oldest first: the pull-style
        twin of the ``on_gap`` option."""
        if subscription.broker is not self or not isinstance(subscription.state, ChannelListener):
            raise DeliveryError(f"{subscription!r} is not a subscription of {self!r}")
        return tuple(subscription.state.gaps)

    # -- management -----------------------------------------------------------------

    def _inspect(self, topic: str) -> TopicInfo:
        channel = self.channel(topic)
        with translate_errors(self.url, topic):
            numsub = self._client.pubsub_numsub(channel)
            numpat = self._client.pubsub_numpat()
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

    def _purge(self, topic: str) -> int:
        return 0  # Pub/Sub stores nothing.

    def _close(self) -> None:
        with self._own_lock:
            if self._own is not None:
                self._own.disconnect()
                self._own = None
        self._client.close()


#: Channels whose topic names a broker remembers (more only with patterns).
_TOPIC_CACHE_SIZE = 4096

#: The envelope exactly as :func:`~brokerkit.backends.redis._envelope.encode` writes
#: a message without headers: JSON strings without escapes or control characters,
#: and a JSON number.
_PLAIN_ENVELOPE = re.compile(
    rb'BK1\{"id":"([^"\\\x00-\x1f]+)","ct":"([^"\\\x00-\x1f]*)",'
    rb'"ts":(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\}\n'
)
_CONTENT_TYPES: dict[bytes, str] = {}


def decode_published(topic: str, data: bytes) -> Message:
    """The message in a published value: what
    :func:`~brokerkit.backends.redis._envelope.decode` returns, faster for the
    envelope of a message without headers, by far the most common one."""
    match = _PLAIN_ENVELOPE.match(data)
    if match is None:
        return decode(topic, data)
    message_id, content_type, published_at = match.groups()
    ctype = _CONTENT_TYPES.get(content_type)
    try:
        if ctype is None:
            ctype = content_type.decode()
            if len(_CONTENT_TYPES) < 256:
                _CONTENT_TYPES[content_type] = ctype
        return Message(
            message_id.decode(), topic, data[match.end() :], ctype, {}, float(published_at)
        )
    except UnicodeDecodeError:
        return decode(topic, data)


#: redis-py before 5.3 wants a command name for ConnectionPool.get_connection.
_GET_CONNECTION_ARGS: tuple[str, ...] = (
    ()
    if inspect.signature(redis.ConnectionPool.get_connection).parameters["command_name"].default
    is not inspect.Parameter.empty
    else ("PUBLISH",)
)


def _exchange(conn: Any, commands: list[tuple[str, str, bytes]]) -> list[Any]:
    """Send ``commands`` on ``conn`` and read their replies, retried on a dropped
    connection as ``conn.retry`` says."""
    packed = conn.pack_commands(commands)
    return conn.retry.call_with_retry(  # type: ignore[no-any-return]
        lambda: _round_trip(conn, packed, len(commands)),
        lambda _error: conn.disconnect(),
    )


def _round_trip(conn: Any, packed: list[bytes], replies: int) -> list[Any]:
    """Send ``packed`` and read ``replies`` replies. A connection that may hold
    unread replies (an error reply, an interrupted read) is closed: the next use
    reconnects, and never reads a stale reply."""
    try:
        conn.send_packed_command(packed)
        return [conn.read_response() for _ in range(replies)]
    except BaseException:
        conn.disconnect()
        raise
