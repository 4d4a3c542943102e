"""Prometheus: the message counters, the handling-time histogram and the topic gauges."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from prometheus_client import CollectorRegistry, generate_latest

import brokerkit
import brokerkit.aio
from brokerkit.instrumentation.prometheus import BrokerkitMetrics, TopicCollector


@pytest.fixture
def metrics() -> Iterator[tuple[BrokerkitMetrics, CollectorRegistry]]:
    registry = CollectorRegistry()
    installed = BrokerkitMetrics(registry).install()
    try:
        yield installed, registry
    finally:
        installed.uninstall()


def _url() -> str:
    return f"memory://prom-{uuid.uuid4().hex}"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_counters_follow_the_messages(
    metrics: tuple[BrokerkitMetrics, CollectorRegistry],
) -> None:
    _, registry = metrics
    with brokerkit.connect(_url(), max_deliveries=3) as broker:
        broker.publish_many("orders", [1, 2])
        with broker.subscribe("orders", group="billing") as sub:
            first = sub.receive(0)
            assert first is not None
            first.nack()  # retried
            for _ in range(2):
                delivery = sub.receive(0)
                assert delivery is not None
                if delivery.id == first.id:
                    delivery.ack()
                else:
                    delivery.nack(requeue=False)  # dead-lettered, "rejected"
    group = {"topic": "orders", "group": "billing"}
    assert value(registry, "brokerkit_messages_published_total", topic="orders") == 2
    assert value(registry, "brokerkit_messages_delivered_total", **group) == 3
    assert value(registry, "brokerkit_messages_acked_total", **group) == 1
    assert value(registry, "brokerkit_messages_nacked_total", **group) == 2
    assert value(registry, "brokerkit_messages_retried_total", **group) == 1
    dead = value(registry, "brokerkit_messages_dead_lettered_total", **group, reason="rejected")
    assert dead == 1
    for outcome in ("ack", "nack", "dead-letter"):
        count = value(
            registry, "brokerkit_handler_duration_seconds_count", **group, outcome=outcome
        )
        assert count == 1


def test_async_api_and_lease_loss(metrics: tuple[BrokerkitMetrics, CollectorRegistry]) -> None:
    _, registry = metrics
    clock = brokerkit.ManualClock()

    async def main() -> None:
        async with brokerkit.aio.connect(_url(), clock=clock, visibility_timeout=5) as broker:
            await broker.publish("t", "x")
            async with await broker.subscribe("t") as sub:
                held = await sub.receive(0)
                assert held is not None
                clock.advance(6)
                again = await sub.receive(0)
                assert again is not None
                with pytest.raises(brokerkit.StaleDelivery):
                    await held.extend(5)
                with pytest.raises(brokerkit.StaleDelivery):
                    await held.ack()  # the same lost lease: not counted again
                await again.ack()

    asyncio.run(main())
    group = {"topic": "t", "group": "default"}
    assert value(registry, "brokerkit_lease_losses_total", **group) == 1
    assert value(registry, "brokerkit_messages_acked_total", **group) == 1


def test_dead_letter_reasons_are_a_fixed_set_not_the_callers_text(
    metrics: tuple[BrokerkitMetrics, CollectorRegistry],
) -> None:
    _, registry = metrics
    with brokerkit.connect(_url()) as broker:
        broker.publish_many("t", range(6))
        for n, delivery in enumerate(broker.consume("t", timeout=0, limit=6)):
            if n < 5:
                delivery.nack(requeue=False, reason=f"ValueError: order {n} is secret")
            else:
                delivery.nack(requeue=False)
    exposed = generate_latest(registry).decode()
    series = [
        line
        for line in exposed.splitlines()
        if line.startswith("brokerkit_messages_dead_lettered_total{")
    ]
    assert len(series) == 2, series  # custom and rejected: not one per distinct text
    assert "secret" not in exposed
    dead = "brokerkit_messages_dead_lettered_total"
    assert value(registry, dead, topic="t", group="default", reason="custom") == 5
    assert value(registry, dead, topic="t", group="default", reason="rejected") == 1


def test_uninstalled_metrics_stop_counting(
    metrics: tuple[BrokerkitMetrics, CollectorRegistry],
) -> None:
    installed, registry = metrics
    installed.uninstall()
    with brokerkit.connect(_url()) as broker:
        broker.publish("orders", 1)
    assert value(registry, "brokerkit_messages_published_total", topic="orders") == 0


def test_topic_collector_reads_inspect_on_scrape() -> None:
    registry = CollectorRegistry()
    with brokerkit.connect(_url()) as broker:
        registry.register(TopicCollector(broker, broker.topics))
        assert b"brokerkit_topic_length{" not in generate_latest(registry)
        broker.publish_many("orders", [1, 2, 3])
        with broker.subscribe("orders", group="billing") as sub:
            held = sub.receive(0)
            assert held is not None
            held.nack(requeue=False)
            scrape = generate_latest(registry).decode()
            assert 'brokerkit_topic_length{topic="orders"} 3.0' in scrape
            assert 'brokerkit_topic_in_flight{topic="orders"} 0.0' in scrape
            assert 'brokerkit_topic_dead_letters{topic="orders"} 1.0' in scrape
            assert 'brokerkit_topic_consumer_lag{group="billing",topic="orders"} 2.0' in scrape
            assert 'brokerkit_topic_up{topic="orders"} 1.0' in scrape
            assert 'brokerkit_topic_scheduled{topic="orders"} 0.0' in scrape
            assert 'brokerkit_topic_oldest_waiting_age_seconds{topic="orders"}' in scrape
            # the dead-letter topic is a topic too
            assert 'brokerkit_topic_length{topic="orders.dlq"} 1.0' in scrape


def test_topic_collector_reports_a_failed_inspect_as_down() -> None:
    registry = CollectorRegistry()
    with brokerkit.connect(_url()) as broker:
        registry.register(TopicCollector(broker, ["orders"]))
    # closed: every inspect now fails with BrokerClosed, a BrokerError
    assert 'brokerkit_topic_up{topic="orders"} 0.0' in generate_latest(registry).decode()


def test_without_ack_a_nack_is_no_retry_and_a_failed_handler_no_dead_letter(
    metrics: tuple[BrokerkitMetrics, CollectorRegistry], redis_broker: Any
) -> None:
    """On redis+pubsub (no ACK, no DEAD_LETTER) a nack only marks the delivery
    settled. Before, retried_total counted it, and the worker's histogram said a
    failed handler's message was dead-lettered (it was dropped: a nack)."""
    _, registry = metrics
    broker = redis_broker("redis+pubsub")
    with broker.subscribe("t") as subscription:
        broker.publish("t", 1)
        delivery = subscription.receive(timeout=10)
        assert delivery is not None
        delivery.nack(requeue=True)
    labels = {"topic": "t", "group": "default"}
    assert value(registry, "brokerkit_messages_nacked_total", **labels) == 1
    assert value(registry, "brokerkit_messages_retried_total", **labels) == 0

    worker = brokerkit.Worker(broker)
    failed = threading.Event()

    @worker.handler("w")
    def boom(body: Any) -> None:
        failed.set()
        raise RuntimeError("boom")

    with worker.running():
        broker.publish("w", 1)
        assert failed.wait(10)
    histogram = "brokerkit_handler_duration_seconds_count"
    on_w = {"topic": "w", "group": "default"}
    assert value(registry, histogram, **on_w, outcome="nack") == 1
    assert value(registry, histogram, **on_w, outcome="dead-letter") == 0
