"""redis+stream: a delayed publish to a topic whose key holds another Redis type is
refused with IncompatibleTopic and holds nothing (held, it could never go out, and
every fetch of the topic would fail on it), as a publish now is. Against a real
redis-server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker
from brokerkit.exceptions import IncompatibleTopic
from tests.conftest import RedisTarget

TOPIC = "orders"

WRITERS: dict[str, Callable[[redis.Redis, str], Any]] = {
    "hash": lambda r, k: r.hset(k, "field", "precious"),
    "set": lambda r, k: r.sadd(k, "precious"),
    "string": lambda r, k: r.set(k, "precious"),
    "zset": lambda r, k: r.zadd(k, {"precious": 1}),
    "list": lambda r, k: r.rpush(k, "precious"),
}


@pytest.fixture
def broker(redis_target: RedisTarget, prefix: str) -> Iterator[RedisStreamBroker]:
    made = brokerkit.connect(redis_target.url("redis+stream"), prefix=prefix)
    assert isinstance(made, RedisStreamBroker)
    yield made
    made.close()


def _snapshot(client: redis.Redis, prefix: str) -> dict[bytes, tuple[bytes, bytes]]:
    return {k: (client.type(k), client.dump(k)) for k in client.scan_iter(f"{prefix}:*")}


@pytest.mark.parametrize("count", [1, 2500])
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_delayed_publish_to_a_key_of_another_type_holds_nothing(
    broker: RedisStreamBroker, redis_client: redis.Redis, prefix: str, kind: str, count: int
) -> None:
    WRITERS[kind](redis_client, f"{prefix}:{{{TOPIC}}}")
    before = _snapshot(redis_client, prefix)
    with pytest.raises(IncompatibleTopic):
        broker.publish_many(TOPIC, [f"later {i}" for i in range(count)], delay=60)
    assert _snapshot(redis_client, prefix) == before


def test_a_delayed_publish_to_a_new_or_stream_topic_is_held(
    broker: RedisStreamBroker, redis_client: redis.Redis, prefix: str
) -> None:
    broker.publish(TOPIC, "later", delay=60)
    broker.publish(TOPIC, "now")
    broker.publish(TOPIC, "later too", delay=60)
    assert redis_client.zcard(f"{prefix}:{{{TOPIC}}}:scheduled") == 2
