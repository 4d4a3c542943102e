"""Names and values another program wrote in bytes are shown one to one: the byte 0xFF
and the four characters ``\\xff`` (UTF-8 text with a backslash) never give the same
text, in a redis+stream raw entry's fields or in a redis+pubsub channel's topic.

Both showed bytes that are not UTF-8 as ``\\xff`` escapes (backslashreplace) and UTF-8
as it is, so the two fields ``\\xff`` and 0xFF of one entry became one (one value lost)
and the channels ``a\\xff`` and ``a`` 0xFF named one topic. Now text that already reads
as escaped (each backslash starting ``\\\\`` or ``\\x80``-``\\xff``) and text that is not
UTF-8 have their backslashes doubled; any other UTF-8 text is as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.redis_server import RedisServer
from tests.test_pubsub_review31_undecodable_channel import heard, heard_asyncio

WAIT = 5.0

#: Raw fields, and the JSON object their delivery's payload must be.
FIELDS: dict[bytes, bytes] = {
    b"\\xff": b"one",  # the four characters: reads as escaped
    b"\xff": b"two",  # the byte
    b"C:\\tmp": b"\\xff",  # no such escape: as it is; the value reads as escaped
    b"v": b"\xff\\",  # not UTF-8: its backslash doubled
    b"w": b"a\\\\b",  # reads as escaped (an escaped backslash)
}
SHOWN: dict[str, str] = {
    "\\\\xff": "one",
    "\\xff": "two",
    "C:\\tmp": "\\\\xff",
    "v": "\\xff\\\\",
    "w": "a\\\\\\\\b",
}

#: (the end of a channel another program publishes to, the end of its delivery's topic)
CHANNELS: list[tuple[bytes, str]] = [
    (b"\\xff", "\\\\xff"),
    (b"\xff", "\\xff"),
    (b"c\\d", "c\\d"),
    (b"ok", "ok"),
]


def test_raw_stream_fields_never_merge(
    redis_broker: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = redis_broker("redis+stream")
    subscription = broker.subscribe("t", group="g")
    redis_client.xadd(broker.stream_key("t"), FIELDS)  # type: ignore[arg-type]
    delivery = subscription.receive(timeout=WAIT)
    assert delivery is not None
    assert json.loads(delivery.payload) == SHOWN
    delivery.ack()


@pytest.mark.parametrize("plain", [False, True])
def test_channels_name_distinct_topics(redis_server: RedisServer, plain: bool) -> None:
    assert heard(redis_server, plain, CHANNELS) == [topic for _, topic in CHANNELS]


def test_channels_name_distinct_topics_asyncio(redis_server: RedisServer) -> None:
    assert heard_asyncio(redis_server, CHANNELS) == [topic for _, topic in CHANNELS]
