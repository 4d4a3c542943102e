"""``redis+pubsub://``: Redis Pub/Sub channels and patterns, at most once.

One folder, native on both sides: :class:`AsyncRedisPubSubBroker`
(``broker_async.py``, on ``redis.asyncio``) is the hand-written source, and
:class:`RedisPubSubBroker` (``broker.py``) is generated from it by
``scripts/generate_sync.py``; likewise the subscriber connection
(``listener_async.py`` -> ``listener.py``). What differs between the two lives in
``wire.py`` (how a subscribed connection's bytes are read); what needs no I/O in
``options.py``, ``gap.py``, ``replies.py`` and ``decoding.py``.
"""

from __future__ import annotations

from brokerkit.backends.redis.pubsub.broker import RedisPubSubBroker, ShardedRedisPubSubBroker
from brokerkit.backends.redis.pubsub.broker_async import (
    AsyncRedisPubSubBroker,
    AsyncShardedRedisPubSubBroker,
)
from brokerkit.backends.redis.pubsub.decoding import decode_published
from brokerkit.backends.redis.pubsub.gap import Gap
from brokerkit.backends.redis.pubsub.options import Published, RedisPubSubOptions

__all__ = [
    "AsyncRedisPubSubBroker",
    "AsyncShardedRedisPubSubBroker",
    "Gap",
    "Published",
    "RedisPubSubBroker",
    "RedisPubSubOptions",
    "ShardedRedisPubSubBroker",
    "decode_published",
]
