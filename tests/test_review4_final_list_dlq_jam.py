"""redis+list: an expired lease at ``max_deliveries`` while the dead-letter key holds
another type does not stop the topic. Every consumer's fetch goes on (its maintenance's
refused rescue is logged once, as a WARNING naming the key), the expired leases stay
leased, an explicit ``rescue`` raises :class:`IncompatibleTopic`, and once the key is
gone the poison message is dead-lettered, once. Against the test session's Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import cast

import pytest

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.exceptions import IncompatibleTopic
from tests.conftest import RedisTarget

pytestmark = pytest.mark.redis_list

DEADLINE = 30.0


def _until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, f"not within {DEADLINE} s: {what}"
        time.sleep(0.05)


def _rescue_refused(broker: RedisListBroker, topic: str) -> bool:
    try:
        broker.rescue(topic)
    except IncompatibleTopic:
        return True
    return False


def test_a_jammed_dead_letter_key_leaves_the_topic_flowing(
    redis_target: RedisTarget, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_target.url("redis+list", visibility_timeout="1", max_deliveries="1")
    client = redis_target.client()
    dlq = f"{prefix}:{{orders}}.dlq"
    client.set(dlq, "not a list")
    try:
        with brokerkit.connect(url, prefix=prefix) as first:
            first.publish("orders", b"poison")
            with first.subscribe("orders") as gone:
                poison = gone.receive(timeout=5)
                assert poison is not None and poison.message.payload == b"poison"
                first.publish("orders", b"healthy")
        # `first` is closed: the poison's lease runs out unrenewed, unsettled.
        with cast(RedisListBroker, brokerkit.connect(url, prefix=prefix)) as broker:
            _until(lambda: _rescue_refused(broker, "orders"), "the poison's lease ran out")
            caplog.clear()
            with (
                caplog.at_level(logging.WARNING, logger="brokerkit"),
                broker.subscribe("orders") as sub,
            ):
                healthy = sub.receive(timeout=5)
                assert healthy is not None and healthy.message.payload == b"healthy"
                healthy.ack()
                # More fetches, maintenance included (half a visibility timeout apart):
                # the poison stays leased, and the refusal is logged once.
                end = time.monotonic() + 1.5
                while time.monotonic() < end:
                    assert sub.receive(timeout=0.2) is None
                assert client.type(dlq) == b"string"
                warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
                assert len(warnings) == 1, [r.getMessage() for r in warnings]
                assert repr(dlq) in warnings[0].getMessage()
                with pytest.raises(IncompatibleTopic):
                    broker.rescue("orders")

                client.delete(dlq)
                _until(
                    lambda: sub.receive(timeout=0.2) is None and client.llen(dlq) == 1,
                    "the poison was dead-lettered once the key was gone",
                )
                assert broker.rescue("orders") == 0
                assert sub.receive(timeout=0.2) is None
                assert client.llen(dlq) == 1
                info = broker.inspect("orders")
                assert (info.length, info.in_flight, info.dead_lettered) == (0, 0, 1)
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
