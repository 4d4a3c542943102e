"""A key under a prefix names its topic one way for every reader (``Keyspace.split``,
which ``topics()`` uses); ``topics()`` asks the types of a huge keyspace in chunks; and a
Sentinel client's close closes every sentinel, even after one failed to close."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
from brokerkit.backends.redis import _topic_scan, _topic_scan_async
from brokerkit.backends.redis._keys import Keyspace
from tests.redis_cluster import SentinelSet
from tests.test_review4_pubsub_sentinel_close import _named_on_sentinels

_topics = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True).flatmap(
    lambda t: st.integers(0, 3).map(lambda n: t + ".dlq" * n)
)
_parts = st.lists(st.sampled_from(["processing", "leases", "expiry", "c1", "7"]), max_size=3)


@given(st.sampled_from(["brokerkit", "app:x", "p{q}"]), _topics, _parts)
def test_a_key_splits_into_its_topic_and_part(prefix: str, topic: str, parts: list[str]) -> None:
    space = Keyspace(prefix)
    key = space.topic(topic, *parts)
    assert space.split(key) == (topic, "".join(":" + p for p in parts))


@pytest.mark.parametrize("key", ["other:{orders}", "brokerkit:orders", "brokerkit:{orders"])
def test_a_key_that_is_no_topics_does_not_split(key: str) -> None:
    assert Keyspace("brokerkit").split(key) is None


def test_topics_are_listed_through_type_chunks(
    redis_broker: Callable[..., Any], redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the TYPE chunk made small, topics on both sides of each chunk's edge (and
    another backend's topic among them) are listed as with one chunk."""
    lists, streams = redis_broker("redis+list"), redis_broker("redis+stream")
    names = [f"t{i:02}" for i in range(11)]
    for i, name in enumerate(names):
        (streams if i % 4 == 3 else lists).publish(name, i)
    lists.publish("t00.dlq", 1)
    expected = [n for i, n in enumerate(names) if i % 4 != 3]
    assert lists.topics() == sorted([*expected, "t00.dlq"])
    for module in (_topic_scan, _topic_scan_async):
        monkeypatch.setattr(module, "TYPE_CHUNK", 3)
    assert lists.topics() == sorted([*expected, "t00.dlq"])
    assert streams.topics() == [n for i, n in enumerate(names) if i % 4 == 3]


class _FailsToClose(redis.Redis):
    """A sentinel client whose close closes it, then raises (a broken socket)."""

    def close(self) -> None:
        super().close()
        raise OSError("the socket broke while closing")


def test_close_closes_every_sentinel_even_when_one_fails(
    redis_sentinel: SentinelSet, prefix: str
) -> None:
    name = f"bk-close-{uuid.uuid4().hex[:8]}"
    broker = brokerkit.connect(redis_sentinel.url("redis+list", client_name=name), prefix=prefix)
    broker.publish("t", "x")
    broker.purge("t")
    sentinels = broker._client.connection_pool.sentinel_manager.sentinels  # type: ignore[attr-defined]
    for sentinel in sentinels:
        sentinel.ping()  # each holds a connection
    assert _named_on_sentinels(redis_sentinel, name) == len(sentinels)
    kind = sentinels[0].__class__
    sentinels[0].__class__ = _FailsToClose
    with pytest.raises(OSError, match="broke while closing"):
        broker._client.close()  # type: ignore[attr-defined]
    assert _named_on_sentinels(redis_sentinel, name) == 0
    sentinels[0].__class__ = kind
    broker.close()
