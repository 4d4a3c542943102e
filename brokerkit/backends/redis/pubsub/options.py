"""What ``redis+pubsub://`` accepts and reports: its options and the receipt of a
counted publish. Plain data, shared by the sync and asyncio brokers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, NamedTuple

from brokerkit._option_secrets import quoted_value
from brokerkit.backends.redis._options import RedisOptions
from brokerkit.backends.redis.pubsub.gap import Gap
from brokerkit.exceptions import InvalidOption

__all__ = ["Published", "RedisPubSubOptions"]


@dataclass(frozen=True)
class RedisPubSubOptions(RedisOptions):
    """Options of ``redis+pubsub://`` URLs (and the Redis options they share).

    ``visibility_timeout`` has no effect (there are no leases);
    ``max_deliveries`` (there are no redeliveries) and ``replicas`` /
    ``replica_timeout`` (Pub/Sub stores nothing for a replica to have) are refused.
    """

    not_applicable: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            name: (
                "Redis Pub/Sub stores nothing, so there is no write for a replica to "
                "confirm (a message reaches the subscribers connected to the server that "
                "ran the PUBLISH); use redis+stream or redis+list with replicas= for "
                "messages that must survive a failover"
            )
            for name in ("replicas", "replica_timeout")
        }
    )

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
    #: Called with a :class:`Gap`, in the consuming thread (or task), when a
    #: subscription has resubscribed after losing its connection, before any
    #: delivery received after the gap is returned. Keyword only. Under
    #: ``brokerkit.aio`` it may be an ``async def``, awaited to its end; the sync
    #: broker refuses one (nothing there could await it).
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
                "ping_interval must be 0 (off) or more seconds, "
                f"got {quoted_value('ping_interval', self.ping_interval)}"
            )
        if self.on_gap is not None and not callable(self.on_gap):
            raise InvalidOption(
                f"on_gap must be a callable taking a Gap, got {type(self.on_gap).__name__}"
            )


class Published(NamedTuple):
    """What ``publish_counted`` reports about one message.

    :ivar id: the message id, as :meth:`~brokerkit.Broker.publish` returns it.
    :ivar receivers: how many subscriber connections Redis handed the message to
        (channel and pattern subscribers, on this server; on a Redis Cluster, the
        subscribers of the topic's shard channel, which are all of them). 0 means
        nobody heard it: it is gone.
    """

    id: str
    receivers: int
