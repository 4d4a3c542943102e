"""redis+stream's set_group_position and delete_entries say what was wrong in the
library's own words. Before: a group (or topic) that does not exist came back as
Redis's raw reply (``NOGROUP No such consumer group ...``, or for a topic with no
stream "The XGROUP subcommand requires the key to exist. Note that for CREATE you may
want to use the MKSTREAM option"), a bad position was named ``start`` (the argument
is ``position``), and a bad entry id to delete_entries was told that 'earliest' or
'latest' would do, which delete_entries does not take. Against a real redis-server,
sync and asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit.aio
from brokerkit.exceptions import InvalidOption
from tests.conftest import RedisTarget


def test_moving_a_group_that_does_not_exist_says_so(redis_broker: Callable[..., Any]) -> None:
    broker = redis_broker("redis+stream")
    broker.publish("orders", {"n": 1})
    with pytest.raises(InvalidOption, match=r"no group 'nope'.*create_group"):
        broker.set_group_position("orders", "nope", "earliest")


def test_moving_a_group_of_a_topic_with_no_stream_says_so(
    redis_broker: Callable[..., Any],
) -> None:
    broker = redis_broker("redis+stream")
    with pytest.raises(InvalidOption, match=r"no group 'g'.*create_group"):
        broker.set_group_position("nothing-here", "g", "latest")


def test_a_bad_position_is_named_position(redis_broker: Callable[..., Any]) -> None:
    broker = redis_broker("redis+stream")
    broker.create_group("orders", "g")
    with pytest.raises(InvalidOption, match=r"^position must be"):
        broker.set_group_position("orders", "g", "bogus")


def test_an_existing_group_still_moves(redis_broker: Callable[..., Any]) -> None:
    broker = redis_broker("redis+stream")
    broker.publish("orders", {"n": 1})
    broker.create_group("orders", "g", start="latest")
    broker.set_group_position("orders", "g", "earliest")
    subscription = broker.subscribe("orders", group="g")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None and delivery.body == {"n": 1}
    delivery.ack()


def test_a_bad_entry_id_to_delete_is_not_offered_earliest(
    redis_broker: Callable[..., Any],
) -> None:
    broker = redis_broker("redis+stream")
    with pytest.raises(InvalidOption) as raised:
        broker.delete_entries("orders", "earliest")
    assert "'earliest'" not in str(raised.value).split(", got")[0], raised.value
    assert "a stream entry id" in str(raised.value)


def test_asyncio_moving_a_group_that_does_not_exist_says_so(
    redis_target: RedisTarget, prefix: str
) -> None:
    async def main() -> None:
        url = redis_target.url("redis+stream")
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish("orders", {"n": 1})
            with pytest.raises(InvalidOption, match=r"no group 'nope'.*create_group"):
                await broker.set_group_position("orders", "nope", "earliest")

    asyncio.run(asyncio.wait_for(main(), 60))
