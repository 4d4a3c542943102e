"""A pattern subscription's deliveries are counted under its pattern, not under each
topic they came from: on redis+pubsub any client may PUBLISH to any channel the glob
matches (any bytes), and each distinct channel made a new series of every counter and
of the histogram (unbounded label cardinality, raw channel text as a label)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from prometheus_client import CollectorRegistry, generate_latest

import brokerkit
import brokerkit.aio
from brokerkit.instrumentation.prometheus import BrokerkitMetrics
from tests.conftest import RedisTarget

#: Channel names a foreign publisher may use under the glob: spaces, quotes, a line
#: break, bytes that are not UTF-8, none of them a valid topic.
FOREIGN = [b"room 1", b'room "2"', b"room\n3", b"room\xff4", b"room-5"]


@pytest.fixture
def metrics() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    installed = BrokerkitMetrics(registry).install()
    try:
        yield registry
    finally:
        installed.uninstall()


def _topic_labels(registry: CollectorRegistry) -> set[str]:
    return {
        sample.labels["topic"]
        for family in registry.collect()
        for sample in family.samples
        if "topic" in sample.labels
    }


def foreign_deliveries(redis_target: RedisTarget, prefix: str) -> list[str]:
    """Deliveries of a redis+pubsub ``chat:*`` subscription from channels another
    client published to, each acked; the topics they carried."""
    topics = []
    with brokerkit.connect(redis_target.url("redis+pubsub"), prefix=prefix) as broker:
        head, tail = broker.channel("chat:X").encode().split(b"chat:X")
        with (
            broker.subscribe("chat:*", pattern=True, prefetch=len(FOREIGN)) as subscription,
            redis_target.client() as client,
        ):
            for name in FOREIGN:
                assert client.publish(head + b"chat:" + name + tail, b"hello") == 1
            for _ in FOREIGN:
                delivery = subscription.receive(timeout=5)
                assert delivery is not None
                topics.append(delivery.topic)
                delivery.ack()
    return topics


def test_a_pattern_subscription_is_counted_under_its_pattern(
    redis_target: RedisTarget, prefix: str, metrics: CollectorRegistry
) -> None:
    topics = foreign_deliveries(redis_target, prefix)
    assert len(set(topics)) == len(FOREIGN)  # five distinct topics came
    assert _topic_labels(metrics) == {"chat:*"}  # one series, not one per channel
    labels = {"topic": "chat:*", "group": "default"}
    assert metrics.get_sample_value("brokerkit_messages_delivered_total", labels) == 5
    assert metrics.get_sample_value("brokerkit_messages_acked_total", labels) == 5
    duration = {**labels, "outcome": "ack"}
    assert metrics.get_sample_value("brokerkit_handler_duration_seconds_count", duration) == 5
    generate_latest(metrics)  # a scrape still renders


def memory_pattern_round(dead_letter: bool) -> None:
    """On asyncio memory://, a ``user.*`` subscription gets one message from each of
    ``user.0``, ``user.1`` and ``user.2``, and acks (or dead-letters) each."""

    async def run() -> None:
        async with (
            brokerkit.aio.connect(f"memory://pattern-{uuid.uuid4().hex}") as broker,
            await broker.subscribe("user.*", pattern=True) as subscription,
        ):
            for user in range(3):
                await broker.publish(f"user.{user}", user)
            for _ in range(3):
                delivery = await subscription.receive(timeout=5)
                assert delivery is not None
                await (delivery.nack(requeue=False) if dead_letter else delivery.ack())

    asyncio.run(run())


def test_an_asyncio_pattern_subscription_on_memory(metrics: CollectorRegistry) -> None:
    memory_pattern_round(dead_letter=True)
    assert _topic_labels(metrics) - {"user.0", "user.1", "user.2"} == {"user.*"}
    labels = {"topic": "user.*", "group": "default"}
    assert metrics.get_sample_value("brokerkit_messages_delivered_total", labels) == 3
    dead = {**labels, "reason": "rejected"}
    assert metrics.get_sample_value("brokerkit_messages_dead_lettered_total", dead) == 3
