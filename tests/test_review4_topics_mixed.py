"""redis+list and redis+stream topics under one prefix of one Redis: each backend's
``topics()`` (and ``brokerkit topics``) lists its own topics only, those that exist
only through brokerkit's sign keys (a delayed publish, deliveries out) included.

Both backends keep a delayed publish in a ``<key>:scheduled`` set: a redis+list topic
that holds nothing but delayed messages (``held``) has no key that tells the two apart,
so redis+stream lists it too (and finds it empty)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit.aio
from tests.conftest import RedisTarget

pytest.importorskip("typer")

from brokerkit.cli._app import run


def _fill(redis_broker: Callable[..., Any]) -> tuple[Any, Any]:
    """Both kinds of topic under one prefix, each with its consumers' own keys."""
    lists, streams = redis_broker("redis+list"), redis_broker("redis+stream")
    lists.publish("waiting", 1)
    lists.publish("held", 1, delay=600)  # only the scheduled set exists
    lists.publish("out", 1)
    with lists.subscribe("out") as out:
        taken = out.receive(timeout=5)  # the queue is empty, the expiry hash not
        assert taken is not None
        assert lists.inspect("out").length == 0
        streams.publish("entries", 1)
        streams.publish("read", 1)
        with streams.subscribe("read", group="g") as read:
            assert read.receive(timeout=5) is not None
            assert lists.topics() == ["held", "out", "waiting"]
            assert _streams_own(streams.topics())
    return lists, streams


def _streams_own(listed: list[str]) -> bool:
    return set(listed) - {"held"} == {"entries", "read"} and listed == sorted(listed)


def test_each_backend_lists_its_own_topics_only(redis_broker: Callable[..., Any]) -> None:
    lists, streams = _fill(redis_broker)
    assert lists.topics() == ["held", "out", "waiting"]
    assert _streams_own(streams.topics())


def test_the_async_brokers_list_their_own_topics_only(
    redis_broker: Callable[..., Any], redis_target: RedisTarget, prefix: str
) -> None:
    _fill(redis_broker)

    async def listed(scheme: str) -> list[str]:
        async with await brokerkit.aio.connect(redis_target.url(scheme), prefix=prefix) as b:
            return await b.topics()

    assert asyncio.run(listed("redis+list")) == ["held", "out", "waiting"]
    assert _streams_own(asyncio.run(listed("redis+stream")))


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [("redis+list", {"held", "out", "waiting"}), ("redis+stream", {"entries", "read"})],
)
def test_the_topics_command_on_a_shared_prefix(
    redis_broker: Callable[..., Any],
    redis_target: RedisTarget,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    scheme: str,
    expected: set[str],
) -> None:
    _fill(redis_broker)
    capsys.readouterr()
    assert run(["topics", redis_target.url(scheme, prefix=prefix), "--json"]) == 0
    rows = {row["topic"] for row in json.loads(capsys.readouterr().out)}
    assert rows - {"held"} == expected - {"held"}
    assert scheme == "redis+stream" or "held" in rows
