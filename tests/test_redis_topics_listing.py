"""redis+list and redis+stream under one prefix (or one key template) of one Redis: a
topic that holds nothing but delayed messages has no key of its own yet, only its
``:scheduled`` sorted set, which both backends name alike. Each backend's ``topics()``
tells its own from the other's by the set's first member (see
:func:`brokerkit.backends.redis._topic_scan_async.scan_topics`): a member in redis+stream's
form (``<tag>\\n<header length>\\n<header><body>``, the header starting with the tag's
message id or ``{"id":``) is redis+stream's, any other redis+list's; a ``:scheduled`` key
that is no sorted set lists the topic on neither. Nothing another program writes there
makes either listing raise."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis._keys import Keyspace
from tests.conftest import RedisTarget

#: Far enough ahead that nothing held here falls due during a test.
LATER = 600


def _listed(broker: Any) -> set[str]:
    return set(broker.topics())


@pytest.fixture
def pair(redis_broker: Callable[..., Any]) -> tuple[Any, Any]:
    """A redis+list and a redis+stream broker under this test's one prefix."""
    return redis_broker("redis+list"), redis_broker("redis+stream")


def test_a_topic_holding_only_delayed_messages_is_listed_by_its_own_backend_only(
    pair: tuple[Any, Any],
) -> None:
    lists, streams = pair
    lists.publish("list-held", 1, delay=LATER)
    lists.publish_many("list-batch", [1, 2, 3], delay=LATER)
    lists.publish("list-retry", 1)
    with lists.subscribe("list-retry") as subscription:
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        delivery.nack(delay=LATER)  # an R<receipt> member; the queue is empty
    info = lists.inspect("list-retry")
    assert (info.length, info.in_flight, info.scheduled) == (0, 0, 1)
    streams.publish("stream-held", 1, delay=LATER)
    streams.publish_many("stream-batch", [1, 2, 3], delay=LATER)
    streams.publish("stream-json", b"x", content_type="odd", delay=LATER)  # a JSON header
    assert lists.topics() == ["list-batch", "list-held", "list-retry"]
    assert streams.topics() == ["stream-batch", "stream-held", "stream-json"]


def test_the_async_brokers_list_their_own_delayed_only_topics(
    pair: tuple[Any, Any], redis_target: RedisTarget, prefix: str
) -> None:
    lists, streams = pair
    lists.publish("list-held", 1, delay=LATER)
    streams.publish("stream-held", 1, delay=LATER)

    async def listed(scheme: str) -> list[str]:
        async with await brokerkit.aio.connect(redis_target.url(scheme), prefix=prefix) as b:
            return await b.topics()

    assert asyncio.run(listed("redis+list")) == ["list-held"]
    assert asyncio.run(listed("redis+stream")) == ["stream-held"]


def test_a_name_both_backends_hold_delayed_messages_of_goes_by_the_first_due(
    pair: tuple[Any, Any],
) -> None:
    """Both backends used one name while its key did not exist: its set holds members of
    both kinds. The one due first (the one that comes out first) says whose it is; once
    the key exists its type does, whatever the set holds."""
    lists, streams = pair
    lists.publish("list-first", 1, delay=LATER)
    streams.publish("list-first", 1, delay=LATER * 2)
    streams.publish("stream-first", 1, delay=LATER)
    lists.publish("stream-first", 1, delay=LATER * 2)
    assert lists.topics() == ["list-first"]
    assert streams.topics() == ["stream-first"]
    assert (lists.inspect("stream-first").scheduled, streams.inspect("list-first").scheduled) == (
        2,
        2,
    )
    lists.publish("stream-first", 2)  # now a list: its queue exists
    assert lists.topics() == ["list-first", "stream-first"]
    assert streams.topics() == []


def test_a_scheduled_key_that_is_no_sorted_set_lists_no_topic(
    pair: tuple[Any, Any], redis_client: redis.Redis, prefix: str
) -> None:
    lists, streams = pair
    space = Keyspace(prefix)
    redis_client.set(space.topic("a-string", "scheduled"), "x")
    redis_client.hset(space.topic("a-hash", "scheduled"), "a", "b")
    lists.publish("list-held", 1, delay=LATER)
    streams.publish("stream-held", 1, delay=LATER)
    assert lists.topics() == ["list-held"]
    assert streams.topics() == ["stream-held"]


@pytest.mark.parametrize("shape", ["{u}:q:*", "u:q:*"])
def test_one_key_template_for_both_backends(
    shape: str, redis_target: RedisTarget, redis_client: redis.Redis
) -> None:
    unique = "tl" + uuid.uuid4().hex[:10]
    template = shape.replace("u", unique)
    try:
        with (
            brokerkit.connect(redis_target.url("redis+list", queue_key=template)) as lists,
            brokerkit.connect(redis_target.url("redis+stream", stream_key=template)) as streams,
        ):
            lists.publish("list-held", 1, delay=LATER)
            streams.publish("stream-held", 1, delay=LATER)
            lists.publish("list-waiting", 1)
            streams.publish("stream-waiting", 1)
            # a name both used: the list's member is due first, but the stream's key
            # exists, and its type says whose the topic is
            lists.publish("both", 1, delay=LATER)
            streams.publish("both", 1, delay=LATER * 2)
            streams.publish("both", 2)
            assert lists.topics() == ["list-held", "list-waiting"]
            assert streams.topics() == ["both", "stream-held", "stream-waiting"]
    finally:
        keys = list(redis_client.scan_iter(match=f"*{unique}*", count=1000))
        if keys:
            redis_client.delete(*keys)


# -- members another program wrote ----------------------------------------------------

#: The rule, written out once more: redis+stream's form, or else redis+list's.
_STREAM_FORM = re.compile(rb"([^\n]*)\n([0-9]+)\n", re.DOTALL)


def _streams(member: bytes) -> bool:
    match = _STREAM_FORM.match(member)
    if match is None:
        return False
    tag, digits = match.group(1), match.group(2).lstrip(b"0") or b"0"
    header = member[match.end() :]
    if len(digits) > len(str(len(header))) or int(digits) > len(header):
        return False
    header = header[: int(digits)]
    ids = [tag]
    if re.fullmatch(rb"S[0-9a-fA-F]{8}.*", tag, re.DOTALL):
        ids.append(tag[9:])
    return header.startswith(b'{"id":') or any(header.startswith(i + b"\n") for i in ids)


_PIECES = st.sampled_from(
    [b"\n", b"S0000000a", b"P", b"R", b"BK1", b"BKR2\n", b"{", b'{"id":', b"7", b"12", b"x"]
)
#: Members near both forms, and any bytes at all.
MEMBERS = st.one_of(
    st.lists(st.one_of(_PIECES, st.binary(max_size=6)), min_size=1, max_size=8).map(b"".join),
    st.binary(min_size=1, max_size=64),
)


@pytest.fixture
def hostile(
    pair: tuple[Any, Any], redis_client: redis.Redis, prefix: str
) -> Callable[[list[bytes]], tuple[bool, bool]]:
    """``hostile(members)``: whether redis+list and redis+stream list topic ``foreign``
    whose ``:scheduled`` set holds just ``members``, in that order of due time."""
    lists, streams = pair
    key = Keyspace(prefix).topic("foreign", "scheduled")

    def listed(members: list[bytes]) -> tuple[bool, bool]:
        redis_client.delete(key)
        redis_client.zadd(key, {m: i for i, m in enumerate(members)})
        try:
            return "foreign" in _listed(lists), "foreign" in _listed(streams)
        finally:
            redis_client.delete(key)

    return listed


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.lists(MEMBERS, min_size=1, max_size=3, unique=True))
@example(members=[b"S00000000abc\n8\nabc\njsonbody"])  # the header starts with the tag's id
@example(members=[b"abc\n8\nabc\njsonbody"])  # an earlier version's tag
@example(members=[b"S00000000abc\n3\nabc\njson"])  # the id's line ends past the header
@example(members=[b'R1-0:c\n9\n{"id":"a"}'])
@example(members=[b"S00000000abc\nBK1{}\n"])
@example(members=[b"S00000000abc\n99\nabc\n"])  # a length past the end
@example(members=[b"\n"])
@example(members=[b"abc\n" + b"0" * 5000 + b"8\nabc\njson"])  # leading zeros
@example(members=[b"abc\n" + b"9" * 5000 + b"\nabc\njson"])  # a length past any int
def test_a_foreign_member_lists_the_topic_on_exactly_one_backend(
    hostile: Callable[[list[bytes]], tuple[bool, bool]], members: list[bytes]
) -> None:
    in_lists, in_streams = hostile(members)
    assert in_lists != in_streams
    assert in_streams == _streams(members[0])  # the first due (all scores differ)
