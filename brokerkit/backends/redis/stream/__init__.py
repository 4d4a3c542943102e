"""``redis+stream://``: Redis streams with consumer groups, native on both sides.

:class:`AsyncRedisStreamBroker` (for :func:`brokerkit.aio.connect`) is the one
hand-written broker; :class:`RedisStreamBroker` (for :func:`brokerkit.connect`) is
generated from it by ``scripts/generate_sync.py``. The parts, one job each:

* ``broker_async.py``: the broker primitives (subscribe, inspect, close...).
* ``fetching_async.py``: fetch (idle entries and due retries reclaimed, new ones read).
* ``publish_async.py``: publishing (XADD, batches in order), holding delayed messages.
* ``settle_async.py``: ack, extend and the renewal of held leases.
* ``nacking_async.py``: nack (requeue, delay, dead-letter, hand back).
* ``purge_async.py``: purge, in short script calls.
* ``reaping_async.py``: dead-lettering entries reclaimed past ``max_deliveries``.
* ``manage_async.py``: reading a stream as a log, groups, trimming, deleting.
* ``inspect_async.py``: XINFO as :class:`StreamTopicInfo` (``info.py``).
* ``calls_async.py``: the Lua scripts registered on the client, run in one round trip.
* ``deliveries_async.py``: entries as deliveries, deliveries grouped for settling.
* no I/O: the Lua text (``scripts.py``, ``lease_scripts.py``, ``ack_script.py``,
  ``group_scripts.py``), ``entries.py`` (decoding, receipts),
  ``options.py``, ``log.py`` (log positions), ``info.py``.

Each ``X_async.py`` has its generated twin ``X.py``: edit the source, then run
``python scripts/generate_sync.py``.
"""

from __future__ import annotations

from brokerkit.backends.redis.stream.broker import RedisStreamBroker
from brokerkit.backends.redis.stream.broker_async import AsyncRedisStreamBroker
from brokerkit.backends.redis.stream.entries import StreamReceipt
from brokerkit.backends.redis.stream.info import StreamGroupInfo, StreamTopicInfo
from brokerkit.backends.redis.stream.log import LogEntry
from brokerkit.backends.redis.stream.options import RedisStreamOptions

__all__ = [
    "AsyncRedisStreamBroker",
    "LogEntry",
    "RedisStreamBroker",
    "RedisStreamOptions",
    "StreamGroupInfo",
    "StreamReceipt",
    "StreamTopicInfo",
]
