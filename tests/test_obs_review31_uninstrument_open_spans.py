"""Uninstrumenting (or unregistering a message plugin) while its operations are under
way: what a plugin started, it ends. A delivery handed out before ``uninstrument()``
ends its ``process`` span at its settlement, and a publish under way its ``send`` span,
as OpenTelemetry's own instrumentations end the spans already started; a plugin
registered meanwhile is never handed the end of an operation it did not see start."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")
pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

import brokerkit
import brokerkit.aio
from brokerkit._hooks import RELAY
from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor
from brokerkit.instrumentation.prometheus import BrokerkitMetrics
from tests.conftest import RedisTarget
from tests.spans import instrument, recorded_spans
from tests.waiting import wait_until


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """brokerkit instrumented; the test uninstruments it itself (again at the end)."""
    with recorded_spans() as exported:
        yield exported


def _url() -> str:
    return f"memory://obs31-{uuid.uuid4().hex}"


def _settlements(exporter: InMemorySpanExporter, name: str) -> list[Any]:
    return [
        (span.attributes or {}).get("brokerkit.settlement")
        for span in exporter.get_finished_spans()
        if span.name == name
    ]


def _flags() -> tuple[bool, bool, bool]:
    return RELAY.publish, RELAY.deliver, RELAY.settle


def test_a_delivery_received_before_uninstrument_ends_its_span_at_its_ack(
    exporter: InMemorySpanExporter,
) -> None:
    with brokerkit.connect(_url()) as broker:
        broker.publish("orders", 1)
        with broker.subscribe("orders", group="g") as subscription:
            delivery = subscription.receive(1)
            assert delivery is not None
            BrokerkitInstrumentor().uninstrument()
            delivery.ack()
            assert _settlements(exporter, "process orders") == ["ack"]
            # uninstrumented: what comes next is not traced
            broker.publish("orders", 2)
            later = subscription.receive(1)
            assert later is not None
            later.ack()
    assert _settlements(exporter, "process orders") == ["ack"]
    assert len([s for s in exporter.get_finished_spans() if s.name == "send orders"]) == 1


def test_the_relay_calls_nothing_once_the_last_open_delivery_ended(
    exporter: InMemorySpanExporter,
) -> None:
    BrokerkitInstrumentor().uninstrument()
    before = _flags()
    instrument(exporter)
    with brokerkit.connect(_url()) as broker:
        broker.publish("orders", 1)
        with broker.subscribe("orders", group="g") as subscription:
            delivery = subscription.receive(1)
            assert delivery is not None
            BrokerkitInstrumentor().uninstrument()
            delivery.ack()
    assert _settlements(exporter, "process orders") == ["ack"]
    assert _flags() == before


def test_redis_stream_dead_letter_after_uninstrument_is_an_error_span(
    exporter: InMemorySpanExporter, redis_target: RedisTarget
) -> None:
    prefix = f"obs31-{uuid.uuid4().hex[:12]}"
    with brokerkit.connect(redis_target.url("redis+stream"), prefix=prefix) as broker:
        try:
            broker.publish("orders", 1)
            with broker.subscribe("orders", group="g") as subscription:
                delivery = subscription.receive(5)
                assert delivery is not None
                BrokerkitInstrumentor().uninstrument()
                delivery.nack(requeue=False)
        finally:
            broker.purge("orders")
            broker.purge("orders.dlq")
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "process orders"]
    assert (span.attributes or {})["brokerkit.settlement"] == "dead-letter"
    assert span.status.status_code is StatusCode.ERROR


def test_asyncio_delivery_across_awaits_ends_its_span_after_uninstrument(
    exporter: InMemorySpanExporter,
) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(_url()) as broker:
            await broker.publish("orders", 1)
            async with await broker.subscribe("orders", group="g") as subscription:
                delivery = await subscription.receive(1)
                assert delivery is not None
                await asyncio.sleep(0)  # another task's turn: the span stays open
                BrokerkitInstrumentor().uninstrument()
                await asyncio.sleep(0)
                await delivery.nack()

    asyncio.run(main())
    assert _settlements(exporter, "process orders") == ["nack"]


def test_a_delivery_never_settled_ends_unsettled_at_its_subscriptions_close(
    exporter: InMemorySpanExporter,
) -> None:
    with brokerkit.connect(_url()) as broker:
        broker.publish("orders", 1)
        with broker.subscribe("orders", group="g") as subscription:
            for delivery in subscription:
                assert delivery is not None
                BrokerkitInstrumentor().uninstrument()
                break
    assert _settlements(exporter, "process orders") == ["unsettled"]


class _Gate:
    """A plugin whose ``brokerkit_publish_start`` runs after the others' (trylast) and
    holds the publish there until :attr:`go` is set: a publish under way."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.go = threading.Event()

    @brokerkit.hookimpl(trylast=True)
    def brokerkit_publish_start(self, headers: dict[str, str]) -> None:
        self.inside.set()
        assert self.go.wait(30), "the test never let the publish go on"


@pytest.fixture
def gate() -> Iterator[_Gate]:
    plugin = _Gate()
    manager = brokerkit.get_plugin_manager()
    manager.register(plugin)
    try:
        yield plugin
    finally:
        plugin.go.set()
        manager.unregister(plugin)


def _publish_in_thread(broker: brokerkit.Broker) -> threading.Thread:
    thread = threading.Thread(target=broker.publish, args=("orders", 1))
    thread.start()
    return thread


def test_a_publish_under_way_in_another_thread_ends_its_span_after_uninstrument(
    exporter: InMemorySpanExporter, gate: _Gate
) -> None:
    with brokerkit.connect(_url()) as broker:
        thread = _publish_in_thread(broker)
        assert gate.inside.wait(30)
        BrokerkitInstrumentor().uninstrument()
        gate.go.set()
        thread.join(30)
        assert broker.inspect("orders").length == 1
    (send,) = exporter.get_finished_spans()
    assert send.name == "send orders"
    assert (send.attributes or {}).get("messaging.message.id")


def test_instrument_while_a_publish_is_under_way_is_not_a_failed_hook(
    gate: _Gate, caplog: pytest.LogCaptureFixture
) -> None:
    exported = InMemorySpanExporter()
    with brokerkit.connect(_url()) as broker:
        thread = _publish_in_thread(broker)
        assert gate.inside.wait(30)
        instrument(exported)
        try:
            with caplog.at_level(logging.ERROR, logger="brokerkit.hooks"):
                gate.go.set()
                thread.join(30)
            broker.publish("orders", 2)  # traced: it began once instrumented
        finally:
            BrokerkitInstrumentor().uninstrument()
    assert [r.getMessage() for r in caplog.records if r.name == "brokerkit.hooks"] == []
    assert [s.name for s in exported.get_finished_spans()] == ["send orders"]


def test_reinstrumented_while_a_delivery_is_open_its_span_ends_once(
    exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    with brokerkit.connect(_url()) as broker:
        broker.publish("orders", 1)
        with broker.subscribe("orders", group="g") as subscription:
            delivery = subscription.receive(1)
            assert delivery is not None
            BrokerkitInstrumentor().uninstrument()
            second = InMemorySpanExporter()
            instrument(second)
            with caplog.at_level(logging.WARNING):
                delivery.ack()
    assert _settlements(exporter, "process orders") == ["ack"]
    assert second.get_finished_spans() == ()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_worker_handler_under_way_when_uninstrumented_records_its_error(
    exporter: InMemorySpanExporter,
) -> None:
    inside, go = threading.Event(), threading.Event()
    with brokerkit.connect(_url(), max_deliveries=1) as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("jobs")
        def job(body: Any, delivery: brokerkit.Delivery) -> None:
            inside.set()
            assert go.wait(30)
            raise RuntimeError("failed after uninstrument")

        broker.publish("jobs", 1)
        with worker.running():
            assert inside.wait(30)
            BrokerkitInstrumentor().uninstrument()  # from another thread than the handler's
            go.set()
            wait_until(
                lambda: _settlements(exporter, "process jobs"), "the process span", within=10
            )
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "process jobs"]
    assert (span.attributes or {})["brokerkit.settlement"] == "dead-letter"
    assert span.status.status_code is StatusCode.ERROR
    assert "failed after uninstrument" in (span.status.description or "")


def test_metrics_uninstalled_time_the_deliveries_handed_out_before() -> None:
    registry = CollectorRegistry()
    metrics = BrokerkitMetrics(registry).install()
    try:
        with brokerkit.connect(_url()) as broker:
            broker.publish("orders", 1)
            with broker.subscribe("orders", group="g") as subscription:
                delivery = subscription.receive(1)
                assert delivery is not None
                metrics.uninstall()
                delivery.ack()
    finally:
        metrics.uninstall()
    labels = {"topic": "orders", "group": "g", "outcome": "ack"}
    assert registry.get_sample_value("brokerkit_handler_duration_seconds_count", labels) == 1
    # the ack itself came once uninstalled: not counted
    acked = {"topic": "orders", "group": "g"}
    assert registry.get_sample_value("brokerkit_messages_acked_total", acked) is None
