"""The worker's handlers under the hooks: spans and metrics of each handled delivery,
the handler's error recorded, sync and asyncio."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")
pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

import brokerkit
import brokerkit.aio
from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor
from brokerkit.instrumentation.prometheus import BrokerkitMetrics
from tests.waiting import wait_until


@pytest.fixture
def observed() -> Iterator[tuple[InMemorySpanExporter, CollectorRegistry]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    BrokerkitInstrumentor().instrument(tracer_provider=provider)
    registry = CollectorRegistry()
    metrics = BrokerkitMetrics(registry).install()
    try:
        yield exporter, registry
    finally:
        metrics.uninstall()
        BrokerkitInstrumentor().uninstrument()


def check(exporter: InMemorySpanExporter, registry: CollectorRegistry) -> None:
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)
    assert [s.name for s in spans] == ["send jobs", "process jobs", "process jobs"]
    send, failed, done = spans
    assert failed.parent is not None and failed.parent.span_id == send.context.span_id
    assert failed.status.status_code is StatusCode.ERROR
    assert "RuntimeError: flaky" in (failed.status.description or "")
    assert "exception" in [e.name for e in failed.events]  # the handler's, recorded
    assert (failed.attributes or {})["brokerkit.settlement"] == "nack"
    assert (done.attributes or {})["brokerkit.settlement"] == "ack"
    assert (done.attributes or {})["brokerkit.delivery.attempt"] == 2
    labels = {"topic": "jobs", "group": "default"}
    for outcome in ("nack", "ack"):
        count = registry.get_sample_value(
            "brokerkit_handler_duration_seconds_count", {**labels, "outcome": outcome}
        )
        assert count == 1
    assert registry.get_sample_value("brokerkit_messages_retried_total", labels) == 1


def test_sync_worker(observed: tuple[InMemorySpanExporter, CollectorRegistry]) -> None:
    exporter, registry = observed
    with brokerkit.connect(f"memory://worker-{uuid.uuid4().hex}") as broker:
        worker = brokerkit.Worker(broker)
        attempts: list[int] = []

        @worker.handler("jobs")
        def job(body: Any, delivery: brokerkit.Delivery) -> None:
            attempts.append(delivery.attempt)
            if delivery.attempt == 1:
                raise RuntimeError("flaky")

        broker.publish("jobs", {"n": 1})
        with worker.running():
            wait_until(
                lambda: len(exporter.get_finished_spans()) == 3, "the three spans", within=10.0
            )
    check(exporter, registry)


def test_async_worker(observed: tuple[InMemorySpanExporter, CollectorRegistry]) -> None:
    exporter, registry = observed

    async def main() -> None:
        async with brokerkit.aio.connect(f"memory://worker-{uuid.uuid4().hex}") as broker:
            worker = brokerkit.aio.Worker(broker)

            @worker.handler("jobs")
            async def job(body: Any, delivery: Any) -> None:
                if delivery.attempt == 1:
                    raise RuntimeError("flaky")

            await broker.publish("jobs", {"n": 1})
            async with worker.running():
                deadline = time.monotonic() + 10
                while len(exporter.get_finished_spans()) < 3:
                    assert time.monotonic() < deadline, "timed out waiting"
                    await asyncio.sleep(0.01)  # polling with a deadline

    asyncio.run(main())
    check(exporter, registry)


# -- hooks end for every delivery a worker received, whatever became of it ---------------


def unsettled(exporter: InMemorySpanExporter, registry: CollectorRegistry) -> None:
    """The one delivery the worker received ended its span and its histogram
    ``"unsettled"``: it was neither acked nor nacked."""
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "process jobs"]
    assert (span.attributes or {})["brokerkit.settlement"] == "unsettled"
    labels = {"topic": "jobs", "group": "default", "outcome": "unsettled"}
    assert registry.get_sample_value("brokerkit_handler_duration_seconds_count", labels) == 1


def test_a_delivery_handed_back_by_a_stopping_worker_ends_its_span(
    observed: tuple[InMemorySpanExporter, CollectorRegistry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that comes while a slot receives: the delivery goes back unhandled. Before,
    its span stayed open and its histogram never saw it, though delivered_total had
    counted it."""
    from brokerkit.worker._runner import Runner

    exporter, registry = observed
    runners: list[Runner] = []
    started = Runner.start

    def start(self: Runner) -> None:
        runners.append(self)
        started(self)

    monkeypatch.setattr(Runner, "start", start)
    handled: list[Any] = []
    with brokerkit.connect(f"memory://worker-{uuid.uuid4().hex}") as broker:
        worker = brokerkit.Worker(broker)

        class StopOnDelivery:
            @brokerkit.hookimpl
            def brokerkit_deliver_start(self, delivery: Any, scope: dict[str, Any]) -> None:
                worker.stop()  # as a signal would, while the slot receives this one
                assert runners[0]._draining.wait(10)

        @worker.handler("jobs")
        def job(body: Any) -> None:
            handled.append(body)

        plugin = StopOnDelivery()
        brokerkit.get_plugin_manager().register(plugin)
        try:
            broker.publish("jobs", 1)
            worker.run()
        finally:
            brokerkit.get_plugin_manager().unregister(plugin)
        assert handled == []
        assert broker.inspect("jobs").length == 1  # handed back
    unsettled(exporter, registry)


def test_a_sync_handler_thread_left_running_ends_its_span_when_it_ends(
    observed: tuple[InMemorySpanExporter, CollectorRegistry],
) -> None:
    exporter, registry = observed
    gate = threading.Event()
    with brokerkit.connect(f"memory://worker-{uuid.uuid4().hex}") as broker:
        worker = brokerkit.Worker(broker, grace=0.1)

        @worker.handler("jobs")
        def slow(body: Any) -> None:
            gate.wait(10)

        broker.publish("jobs", 1)
        try:
            with worker.running():
                wait_until(
                    lambda: worker.stats()[0].in_flight == 1, "the slot to be busy", within=10.0
                )
            assert not worker.drained
        finally:
            gate.set()
        wait_until(
            lambda: worker.stats()[0].in_flight == 0,
            "the handled delivery to be settled",
            within=10.0,
        )
    wait_until(lambda: len(exporter.get_finished_spans()) == 2, "the two spans", within=10.0)
    unsettled(exporter, registry)


def test_an_asyncio_workers_handler_thread_left_running_ends_its_span_when_it_ends(
    observed: tuple[InMemorySpanExporter, CollectorRegistry],
) -> None:
    """Before: the asyncio worker never ended it (its slot was cancelled, and nothing
    saw the thread end)."""
    exporter, registry = observed
    gate = threading.Event()

    async def main() -> None:
        async with brokerkit.aio.connect(f"memory://worker-{uuid.uuid4().hex}") as broker:
            worker = brokerkit.aio.Worker(broker, grace=0.1)

            @worker.handler("jobs")
            def slow(body: Any) -> None:
                gate.wait(10)

            await broker.publish("jobs", 1)
            async with worker.running():
                deadline = time.monotonic() + 10
                while worker.stats()[0].in_flight == 0:
                    assert time.monotonic() < deadline, "the handler never started"
                    await asyncio.sleep(0.01)  # polling with a deadline
            assert not worker.drained
            gate.set()

    try:
        asyncio.run(main())
    finally:
        gate.set()
    wait_until(lambda: len(exporter.get_finished_spans()) == 2, "the two spans", within=10.0)
    unsettled(exporter, registry)
