"""redis+stream's inspect of a stream another program also reads, under group and
consumer names that are not UTF-8 (Redis takes any bytes): it shows them, never
fails on them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import redis

from brokerkit.backends.redis.stream import RedisStreamBroker

Make = Callable[..., RedisStreamBroker]


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    return functools.partial(redis_broker, "redis+stream")


def test_inspect_shows_a_foreign_group_and_consumer_whose_names_are_not_utf8(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    broker.publish("s", "one")
    broker.publish("s", "two")
    key = broker.stream_key("s")
    redis_client.xgroup_create(key, b"\xff\xfegroup", id="0")
    redis_client.xreadgroup(b"\xff\xfegroup", b"\xc3(reader", {key: ">"}, count=1)
    info = broker.inspect("s")
    [foreign] = info.groups
    assert foreign.name == "\\xff\\xfegroup"
    assert foreign.pending == 1 and foreign.lag == 1
    assert [c.name for c in foreign.consumers] == ["\\xc3(reader"]
    assert info.in_flight == 1
    assert info.oldest_in_flight_age is not None
    assert "s" in broker.topics()


def test_remove_idle_consumers_names_a_foreign_consumer_whose_name_is_not_utf8(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    broker.create_group("s", "default")
    key = broker.stream_key("s")
    redis_client.xgroup_createconsumer(key, "default", b"\xc3(idle")
    assert broker.remove_idle_consumers("s", "default", idle=0) == ["\\xc3(idle"]
    assert redis_client.xinfo_consumers(key, "default") == []
