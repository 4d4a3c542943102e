"""``redis+list://``: the reliable queue on Redis lists (moved into this folder; the
asyncio conversion follows in the next commit)."""

from brokerkit.backends.redis.list.broker_async import RedisListBroker, RedisListOptions

__all__ = ["RedisListBroker", "RedisListOptions"]
