"""redis+stream's ``max_age`` counts back from the Redis server's clock, which gives the
entries their ids, not from this host's. Before, a publisher whose clock ran two minutes
ahead of the server's with ``max_age=60`` trimmed every entry it had just added:
``publish`` returned an id and the message was gone (and a smaller skew dropped entries
early). The same for ``publish_many``, a delayed publish released by a fetch, and
``trim(max_age=)``. Against a real redis-server; only this process's clock, as the
publishing modules read it, is set ahead (the server's is real)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from unittest import mock

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import manage, publish
from tests.conftest import RedisTarget

TOPIC = "orders"
#: How far this host's clock runs ahead of the server's.
AHEAD = 120.0


@pytest.fixture
def clock_ahead() -> Iterator[None]:
    ahead = SimpleNamespace(time=lambda: time.time() + AHEAD, monotonic=time.monotonic)
    with (
        mock.patch.object(publish, "time", ahead, create=True),
        mock.patch.object(manage, "time", ahead),
    ):
        yield


@pytest.mark.parametrize("exact", ["true", "false"])
def test_a_publisher_ahead_of_the_server_keeps_what_it_publishes(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str, exact: str, clock_ahead: None
) -> None:
    url = redis_target.url("redis+stream", max_age="60", trim_exact=exact)
    with brokerkit.connect(url, prefix=prefix) as broker:
        broker.create_group(TOPIC, "g")
        broker.publish(TOPIC, {"n": 1})
        broker.publish_many(TOPIC, [{"n": 2}, {"n": 3}])
        broker.publish(TOPIC, {"n": 4}, delay=0.001)
        subscription = broker.subscribe(TOPIC, group="g")
        bodies = []
        while len(bodies) < 4 and (delivery := subscription.receive(timeout=5)) is not None:
            bodies.append(delivery.body["n"])
            delivery.ack()
        assert sorted(bodies) == [1, 2, 3, 4]
        assert broker.trim(TOPIC, max_age=60, exact=True) == 0
        assert redis_client.xlen(f"{prefix}:{{{TOPIC}}}") == 4


def test_trim_by_age_still_drops_old_entries(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:{{{TOPIC}}}"
    redis_client.xadd(key, {"body": "old"}, id="1-1")  # from 1970, by the server's ids
    with brokerkit.connect(redis_target.url("redis+stream"), prefix=prefix) as broker:
        broker.publish(TOPIC, {"n": 1})
        assert broker.trim(TOPIC, max_age=3600, exact=True) == 1
        assert [e.message.body for e in broker.read(TOPIC)] == [{"n": 1}]
