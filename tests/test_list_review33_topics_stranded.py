"""redis+list: ``topics()`` lists a topic whose only message sits in a dead consumer's
processing or moving list (on a cluster BLMOVE and the fetch's script are separate
commands: a consumer killed between them leaves the message there, for a rescue to
hand back). a1e240d listed a topic found by its consumers set alone only while one of
them was alive, so such a topic was not listed, though it held a message.

And the look at heartbeats costs nothing for a topic whose queue key was found: only
those found by their other keys alone are asked about (before, every topic listed cost
two commands more)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis_list


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list")


@pytest.mark.parametrize("where", ["processing", "moving"])
@pytest.mark.parametrize("template", [False, True])
def test_a_message_stranded_with_a_dead_consumer_lists_its_topic(
    connect: Callable[..., Any], prefix: str, template: bool, where: str
) -> None:
    broker = connect(**({"queue_key": f"q{prefix}:*"} if template else {}))
    client = broker._client
    keys = broker._topic("stranded").keys
    stranded = keys.processing("C") if where == "processing" else keys.moving("C")
    try:
        client.zadd(keys.consumers, {"C": 1})  # dead long ago
        assert broker.topics() == []  # nothing but a dead consumer
        client.rpush(stranded, b"m")  # moved by BLMOVE, the fetch never ran
        assert broker.topics() == ["stranded"]
        client.zadd(keys.consumers, {"D": 1})  # another dead one, holding nothing
        assert broker.topics() == ["stranded"]
        client.delete(stranded)
        assert broker.topics() == []
    finally:
        client.delete(stranded, keys.consumers)


def test_topics_with_their_queue_key_cost_no_heartbeat_look() -> None:
    with RedisServer() as server:
        client = server.client()
        with brokerkit.connect(server.url("redis+list")) as broker:
            for i in range(20):
                broker.publish(f"t{i}", b"m")
            client.config_resetstat()
            assert broker.topics() == sorted(f"t{i}" for i in range(20))
            stats = client.info("commandstats")
        asked = {name for name in stats if name.removeprefix("cmdstat_") in ("exists", "zrange")}
        assert asked == set(), stats
