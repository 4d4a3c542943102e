"""A delayed ``publish_many`` comes out in the order given on the Redis backends, even
when its message ids are not in that order (the per-process counter in the ids wraps
inside the batch's millisecond, or the clock steps back inside the batch); and held
messages in the member format of earlier versions are still released whole."""

from __future__ import annotations

import itertools
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit._message
from brokerkit._message import Message, new_message_id
from brokerkit.backends.redis import _envelope
from brokerkit.backends.redis._stream_fields import stream_header

SCHEMES = ["redis+list", "redis+stream"]

#: A millisecond of the id clock (ns), any one: only the ids' order matters here.
MS = 1_000_000
EPOCH_MS = 1_700_000_000_000


def _id_clock(monkeypatch: pytest.MonkeyPatch, milliseconds: list[int]) -> None:
    """Message ids read these milliseconds, one per id, then the last one for good."""
    readings: Iterator[int] = iter([ms * MS for ms in milliseconds])
    last = milliseconds[-1] * MS
    fake = types.SimpleNamespace(time_ns=lambda: next(readings, last))
    monkeypatch.setattr(brokerkit._message, "time", fake)


def _bodies(subscription: brokerkit.Subscription, count: int) -> list[Any]:
    got = []
    for _ in range(count):
        delivery = subscription.receive(timeout=5)
        assert delivery is not None, f"only {got} came out"
        got.append(delivery.body)
        delivery.ack()
    return got


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_delayed_batch_whose_id_counter_wraps_comes_out_in_the_order_given(
    redis_broker: Callable[..., Any], scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker: brokerkit.Broker = redis_broker(scheme)
    subscription = broker.subscribe("jobs")
    monkeypatch.setattr(brokerkit._message._ids, "counter", itertools.count(0xFFFD))
    _id_clock(monkeypatch, [EPOCH_MS])  # the whole batch in one millisecond
    ids = broker.publish_many("jobs", list(range(8)), delay=0.05)
    assert [i[-4:] for i in ids[2:4]] == ["ffff", "0000"]  # the counter wrapped
    assert sorted(ids) != ids
    assert _bodies(subscription, 8) == list(range(8))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_delayed_batch_whose_clock_steps_back_comes_out_in_the_order_given(
    redis_broker: Callable[..., Any], scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker: brokerkit.Broker = redis_broker(scheme)
    subscription = broker.subscribe("jobs")
    _id_clock(monkeypatch, [EPOCH_MS + 5] * 4 + [EPOCH_MS] * 4)
    ids = broker.publish_many("jobs", list(range(8)), delay=0.05)
    assert sorted(ids) == ids[4:] + ids[:4]
    assert _bodies(subscription, 8) == list(range(8))


def test_held_list_members_of_the_earlier_format_are_released_whole(
    redis_broker: Callable[..., Any], redis_client: redis.Redis
) -> None:
    """``P<id>\\n<element>`` (a delayed publish) and ``R<receipt>\\n<element>`` (a
    delayed retry), as earlier versions wrote them, due now."""
    broker: brokerkit.Broker = redis_broker("redis+list")
    subscription = broker.subscribe("jobs")
    scheduled = broker.inspect("jobs").details["scheduled_key"]
    published, retried = _message("published"), _message("retried")
    redis_client.zadd(
        scheduled,
        {
            b"P" + published.id.encode() + b"\n" + _envelope.encode(published): 0,
            b"Rold-0:gone\nBKR1\n" + _envelope.encode(retried): 0,
        },
    )
    got = {}
    for _ in range(2):
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        got[delivery.id] = (delivery.message, delivery.attempt)
        delivery.ack()
    assert got == {published.id: (published, 1), retried.id: (retried, 2)}
    assert broker.inspect("jobs").scheduled == 0


def test_held_stream_members_of_the_earlier_format_are_released_whole(
    redis_broker: Callable[..., Any], redis_client: redis.Redis, prefix: str
) -> None:
    """``<id>\\n<header length>\\n<header><body>``, as earlier versions wrote it, due now."""
    broker: brokerkit.Broker = redis_broker("redis+stream")
    subscription = broker.subscribe("jobs")
    message = _message("published")
    header = stream_header(message).encode()
    member = b"%s\n%d\n%s%s" % (message.id.encode(), len(header), header, message.payload)
    redis_client.zadd(f"{prefix}:{{jobs}}:scheduled", {member: 0})
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    assert (delivery.message, delivery.attempt) == (message, 1)
    delivery.ack()
    assert broker.inspect("jobs").scheduled == 0


def _message(body: str) -> Message:
    return Message(
        new_message_id(),
        "jobs",
        f'"{body}"'.encode(),
        "application/json",
        {"k": "v"},
        time.time(),
    )
