"""redis+stream ``publish_many`` of more than one script's worth of messages (2,000 a
script) into a Redis that runs out of memory (``maxmemory``, ``noeviction``) on the
way: what is stored is none of the batch, or exactly the leading part the error names,
never a later part with a gap before it. Delayed batches (held in the ``scheduled``
set) likewise. Against a private redis-server whose memory limit the test sets just
above what it uses."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit.backends.redis.stream.options import PUBLISH_CHUNK
from brokerkit.exceptions import BrokerError
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis_stream

#: What a partial batch's error says: how many leading messages are in Redis.
STORED = re.compile(r"the first (\d+) of (\d+) messages")
#: A test body ends in its index, 6 digits, and its padding.
INDEX = re.compile(rb"(\d{6})x+$")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def _indexes(client: redis.Redis, prefix: str) -> list[int]:
    """The indexes of the test's bodies in Redis under ``prefix``: the stream's entries
    in stream order, or the scheduled set's members in due order."""
    found: list[int] = []
    for key in sorted(client.scan_iter(match=f"{prefix}*", count=1000)):
        kind = client.type(key)
        if kind == b"stream":
            values = [v for _, fields in client.xrange(key) for v in fields.values()]
        elif kind == b"zset":
            values = client.zrange(key, 0, -1)
        else:
            continue
        for value in values:
            match = INDEX.search(value)
            if match:
                found.append(int(match.group(1)))
    return found


@settings(
    max_examples=12,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    count=st.integers(PUBLISH_CHUNK + 1, 3 * PUBLISH_CHUNK + 500),
    size=st.integers(200, 1200),
    headroom=st.integers(200_000, 5_000_000),
    delayed=st.booleans(),
)
@example(count=3000, size=1000, headroom=1_500_000, delayed=False)
@example(count=2500, size=1000, headroom=1_500_000, delayed=False)
@example(count=5000, size=1000, headroom=1_500_000, delayed=False)
@example(count=3000, size=1000, headroom=1_500_000, delayed=True)
@example(count=5000, size=1000, headroom=2_600_000, delayed=False)  # the first script fits
@example(count=5000, size=1000, headroom=2_600_000, delayed=True)
def test_a_batch_that_runs_out_of_memory_stores_a_leading_part_at_most(
    server: RedisServer, count: int, size: int, headroom: int, delayed: bool
) -> None:
    prefix = f"bkt-oom-{uuid.uuid4().hex[:10]}"
    client = server.client()
    topic = "oom"
    bodies = [b"%06d" % i + b"x" * (size - 6) for i in range(count)]
    try:
        with brokerkit.connect(server.url("redis+stream"), prefix=prefix) as broker:
            broker.publish(topic, b"warm")  # the stream exists before the limit is set
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", used + headroom)
            error: BrokerError | None = None
            try:
                broker.publish_many(topic, bodies, delay=60 if delayed else None)
            except BrokerError as exc:
                error = exc
            finally:
                client.config_set("maxmemory", 0)
            stored = _indexes(client, prefix)
        if error is None:
            assert stored == list(range(count))
        else:
            said = STORED.search(str(error))
            leading = int(said.group(1)) if said else 0
            if said:
                assert int(said.group(2)) == count, str(error)
                assert 0 < leading < count, str(error)
            assert stored == list(range(leading)), (str(error), stored[:3], len(stored))
    finally:
        client.config_set("maxmemory", 0)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
