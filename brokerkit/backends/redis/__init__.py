"""The Redis backends: lists, streams and pub/sub.

This plugin registers them lazily, so that ``import brokerkit`` never imports
redis-py; it is imported only when a ``redis+...`` URL is used. Each family lives in
its own folder (``list/``, ``stream/``, ``pubsub/``) beside the shared plumbing here,
with a native asyncio class (the hand-written source) and a sync class generated from it.
"""

from __future__ import annotations

from brokerkit._registry import BackendRegistry
from brokerkit.hookspecs import hookimpl

_HINT = 'install the Redis driver: pip install "pybrokerkit[redis]"'


@hookimpl
def brokerkit_register_backends(registry: BackendRegistry) -> None:
    registry.add(
        "brokerkit.backends.redis.list:RedisListBroker",
        schemes=("redis+list", "rediss+list"),
        install_hint=_HINT,
        aio="brokerkit.backends.redis.list:AsyncRedisListBroker",
    )
    registry.add(
        "brokerkit.backends.redis.stream:RedisStreamBroker",
        schemes=("redis+stream", "rediss+stream"),
        install_hint=_HINT,
        aio="brokerkit.backends.redis.stream:AsyncRedisStreamBroker",
    )
    registry.add(
        "brokerkit.backends.redis.pubsub:RedisPubSubBroker",
        schemes=("redis+pubsub", "rediss+pubsub"),
        install_hint=_HINT,
        aio="brokerkit.backends.redis.pubsub:AsyncRedisPubSubBroker",
    )
