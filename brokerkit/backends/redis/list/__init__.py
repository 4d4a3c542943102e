"""``redis+list://``: the reliable queue on Redis lists, native on both sides.

:class:`AsyncRedisListBroker` (for :func:`brokerkit.aio.connect`) is written once, on
``redis.asyncio``, in ``broker_async.py``; :class:`RedisListBroker` (for
:func:`brokerkit.connect`) is generated from it into ``broker.py`` by
``scripts/generate_sync.py``. The parts without I/O are shared by both:

- ``options.py``: :class:`RedisListOptions`;
- ``keys.py``: where a topic lives (queue, leases, deadlines, consumers, dead letters);
- ``scripts.py``: the Lua scripts (fetch, settle, extend, rescue, inspect);
- ``plan.py``: the keys and first arguments of every script call on a topic;
- ``replies.py``: how the scripts' replies read;
- ``calls_async.py`` (and the generated ``calls.py``): running one operation, retried
  through connection loss, with brokerkit's errors.
"""

from __future__ import annotations

from brokerkit.backends.redis.list.broker import RedisListBroker
from brokerkit.backends.redis.list.broker_async import AsyncRedisListBroker
from brokerkit.backends.redis.list.options import RedisListOptions

__all__ = ["AsyncRedisListBroker", "RedisListBroker", "RedisListOptions"]
