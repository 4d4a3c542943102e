"""redis+stream's management methods, continued (review 29).

``delete_group`` ran its clean-up (the group's wake and delayed streams, its lease
length and lost count) without looking at the replies: a clean-up command that failed,
such as an HDEL on a key of another type, was dropped silently and the group's state
left behind. Seconds and counts took only int and float after their checks came in,
refusing the real numbers they took before (a ``Fraction``, a numpy scalar); they take
any real number of seconds and any whole number, still not a bool, NaN, infinity or a
negative one."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from fractions import Fraction
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


class Whole:
    """A whole number that is not an int, as a numpy integer is (numbers.Integral)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value


numbers.Integral.register(Whole)  # as numpy registers its integer types


def test_delete_group_raises_when_its_clean_up_fails(
    make: Make, redis_client: redis.Redis, redis_target: RedisTarget, prefix: str
) -> None:
    broker = make()
    broker.create_group("t", "g")
    lease_lengths = broker._keys.topic("t", "vt")
    redis_client.delete(lease_lengths)
    redis_client.set(lease_lengths, "another program's string")
    with pytest.raises(IncompatibleTopic):
        broker.delete_group("t", "g")

    broker.create_group("t", "g")

    async def main() -> None:
        async with brokerkit.aio.connect(redis_target.url("redis+stream", prefix=prefix)) as aio:
            with pytest.raises(IncompatibleTopic):
                await aio.delete_group("t", "g")

    run(main())
    assert redis_client.get(lease_lengths) == b"another program's string"


def test_delete_group_of_a_group_with_nothing_to_clean_up_says_it_existed(make: Make) -> None:
    broker = make()
    broker.create_group("t", "g")
    assert broker.delete_group("t", "g") is True
    assert broker.delete_group("t", "g") is False


def test_real_numbers_of_seconds_and_whole_counts_are_taken(make: Make) -> None:
    broker = make()
    broker.publish_many("t", ["a", "b", "c"])
    assert broker.trim("t", max_age=Fraction(3600, 1)) == 0
    assert broker.trim("t", maxlen=Whole(2), exact=True) == 1
    assert [e.message.body for e in broker.read("t", count=Whole(1))] == ["b"]
    assert len(broker.read("t", count=Whole(5), timeout=Fraction(1, 100))) == 2
    assert broker.remove_idle_consumers("t", "g", Fraction(1, 2)) == []
    assert [e.message.body for e in broker.tail("t", timeout=Fraction(1, 100), batch=Whole(1))] == [
        "b",
        "c",
    ]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"max_age": Fraction(-1, 2)}, "max_age"),
        ({"max_age": Fraction(10**400, 1)}, "a huge number"),
        ({"max_age": 10**400}, "a huge int"),
        ({"max_age": True}, "max_age"),
        ({"maxlen": Whole(-1)}, "maxlen"),
        ({"maxlen": Fraction(2, 1)}, "maxlen"),
        ({"maxlen": Whole(2**63)}, "a huge int"),
    ],
)
def test_bad_real_numbers_are_still_refused(make: Make, bad: dict[str, Any], match: str) -> None:
    broker = make()
    broker.publish_many("t", ["a", "b"])
    with pytest.raises(InvalidOption, match=match):
        broker.trim("t", **bad)
    with pytest.raises(InvalidOption, match="idle"):
        broker.remove_idle_consumers("t", "g", Fraction(-1, 1))
    with pytest.raises(InvalidOption, match="timeout"):
        broker.read("t", timeout=math.nan)
    assert broker.inspect("t").length == 2
