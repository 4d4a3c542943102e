"""redis+stream's management methods given bad arguments, or a topic they cannot
act on: a clear InvalidOption naming what is valid (and nothing done), never a
Python or Redis error, nor a trim of the whole stream; ``delete_group`` of a topic
with no stream says the group did not exist; a topic key of another type is an
IncompatibleTopic, as for every other operation."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit.aio
from brokerkit import IncompatibleTopic, InvalidOption
from brokerkit.backends.redis.stream import RedisStreamBroker
from tests.conftest import RedisTarget
from tests.redis_stream_aio_support import run

Make = Callable[..., RedisStreamBroker]


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    return functools.partial(redis_broker, "redis+stream")


@pytest.mark.parametrize(
    "bad",
    [
        {"max_age": -5},
        {"max_age": math.nan},
        {"max_age": math.inf},
        {"max_age": "60"},
        {"maxlen": -1},
        {"maxlen": True},
        {"maxlen": 1.5},
    ],
)
def test_a_bad_trim_is_refused_and_trims_nothing(make: Make, bad: dict[str, Any]) -> None:
    broker = make()
    broker.publish_many("t", ["a", "b"])
    with pytest.raises(InvalidOption, match=r"maxlen|max_age"):
        broker.trim("t", **bad)
    assert broker.inspect("t").length == 2


def test_a_max_age_older_than_the_clock_trims_nothing(make: Make) -> None:
    broker = make()
    broker.publish("t", "a")
    assert broker.trim("t", max_age=1e300) == 0
    assert broker.inspect("t").length == 1


@pytest.mark.parametrize("idle", [-1, math.nan, math.inf, "1"])
def test_remove_idle_consumers_refuses_a_bad_idle_time(make: Make, idle: Any) -> None:
    broker = make()
    broker.create_group("t", "g")
    with pytest.raises(InvalidOption, match="idle"):
        broker.remove_idle_consumers("t", "g", idle)


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -1])
def test_read_and_tail_refuse_a_timeout_that_is_no_time(make: Make, timeout: float) -> None:
    broker = make()
    broker.publish("t", "a")
    with pytest.raises(InvalidOption, match="timeout"):
        broker.read("t", timeout=timeout)
    with pytest.raises(InvalidOption, match="timeout"):
        list(broker.tail("t", timeout=timeout))


def test_a_count_or_entry_id_past_what_redis_takes_is_refused(make: Make) -> None:
    broker = make()
    broker.publish("t", "a")
    huge = f"{2**64}-0"
    with pytest.raises(InvalidOption, match="18446744073709551615"):
        broker.read("t", after=huge)
    with pytest.raises(InvalidOption, match="18446744073709551615"):
        broker.delete_entries("t", f"1-{2**64}")
    with pytest.raises(InvalidOption, match="18446744073709551615"):
        broker.create_group("t", "g", start=huge)
    with pytest.raises(InvalidOption, match="count"):
        broker.read("t", count=2**63)
    assert [e.message.body for e in broker.read("t", after=f"{2**64 - 1}-0")] == []


def test_delete_group_of_a_topic_with_no_stream_says_it_did_not_exist(
    make: Make, redis_target: RedisTarget, prefix: str
) -> None:
    broker = make()
    assert broker.delete_group("nothing-here", "g") is False

    async def main() -> None:
        async with brokerkit.aio.connect(redis_target.url("redis+stream", prefix=prefix)) as aio:
            assert await aio.delete_group("nothing-here", "g") is False

    run(main())


def test_group_management_on_a_key_of_another_type_is_an_incompatible_topic(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    redis_client.set(broker.stream_key("t"), "another program's string")
    with pytest.raises(IncompatibleTopic, match="'t'"):
        broker.delete_group("t", "g")
    with pytest.raises(IncompatibleTopic, match="'t'"):
        broker.remove_idle_consumers("t", "g", 0)
    assert redis_client.get(broker.stream_key("t")) == b"another program's string"
