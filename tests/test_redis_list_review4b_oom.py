"""redis+list ``publish_many`` into a Redis that runs out of memory (``maxmemory``,
``noeviction``) on the way: the whole batch is stored or none of it, immediate
(``MULTI``/``EXEC``) or delayed (one script, which Redis refuses at its first write or
runs to the end). Against a private redis-server whose memory limit the test sets
just above what it uses."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit.exceptions import BrokerError
from tests.redis_server import RedisServer

#: A test body ends in its index, 6 digits, and its padding.
INDEX = re.compile(rb"(\d{6})x+$")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def _indexes(client: redis.Redis, prefix: str) -> list[int]:
    """The indexes of the test's bodies under ``prefix``: the queue's, oldest first,
    then the scheduled set's, in due order."""
    found: list[int] = []
    for key in sorted(client.scan_iter(match=f"{prefix}*", count=1000)):
        kind = client.type(key)
        if kind == b"list":
            values = list(reversed(client.lrange(key, 0, -1)))
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
    count=st.integers(1001, 4000),
    size=st.integers(200, 1200),
    headroom=st.integers(200_000, 5_000_000),
    delayed=st.booleans(),
)
@example(count=3000, size=1000, headroom=1_500_000, delayed=True)  # the review's repro
@example(count=3000, size=1000, headroom=1_500_000, delayed=False)
@example(count=4000, size=1000, headroom=3_000_000, delayed=True)
def test_a_batch_that_runs_out_of_memory_is_stored_whole_or_not_at_all(
    server: RedisServer, count: int, size: int, headroom: int, delayed: bool
) -> None:
    prefix = f"bkt-oom-{uuid.uuid4().hex[:10]}"
    client = server.client()
    topic = "oom"
    bodies = [b"%06d" % i + b"x" * (size - 6) for i in range(count)]
    try:
        with brokerkit.connect(server.url("redis+list"), prefix=prefix) as broker:
            broker.publish(topic, b"warm")
            client.delete(broker._topic(topic).keys.queue)
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
        assert stored == ([] if error is not None else list(range(count))), (
            str(error),
            len(stored),
        )
    finally:
        client.config_set("maxmemory", 0)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
