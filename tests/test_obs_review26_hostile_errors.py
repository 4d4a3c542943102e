"""An error whose ``__str__`` raises still ends its OpenTelemetry span: the ``process``
span of a worker's delivery whose handler raised it (sync and asyncio workers), and the
``send`` span of a publish that failed with it; the span records the error, with a text
that never fails. The Prometheus topic collector logs such an error readably too."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")
pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry, generate_latest

import brokerkit
import brokerkit.aio
from brokerkit._hooks import RELAY
from brokerkit.instrumentation.prometheus import TopicCollector
from tests.spans import recorded_spans
from tests.waiting import wait_until


class Hostile(Exception):
    """An error whose text cannot be read."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exported:
        yield exported


def _url() -> str:
    return f"memory://obs26-hostile-{uuid.uuid4().hex}"


def _spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def _assert_records_hostile(span: ReadableSpan) -> None:
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "Hostile: <Hostile: str() failed>"
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == f"{__name__}.Hostile"
    (event,) = [e for e in span.events if e.name == "exception"]
    event_attributes = dict(event.attributes or {})
    assert event_attributes["exception.type"] == f"{__name__}.Hostile"
    assert event_attributes["exception.message"] == "<Hostile: str() failed>"


def test_a_sync_handler_raising_an_unprintable_error_ends_its_process_span(
    exporter: InMemorySpanExporter,
) -> None:
    with brokerkit.connect(_url(), max_deliveries=1) as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("t")
        def handle(body: Any) -> None:
            raise Hostile()

        broker.publish("t", 1)
        with worker.running():
            wait_until(lambda: broker.inspect("t").dead_lettered == 1, "the dead letter")
    wait_until(lambda: _spans(exporter, "process t"), "the process span")
    (span,) = _spans(exporter, "process t")
    assert (span.attributes or {})["brokerkit.settlement"] == "dead-letter"
    _assert_records_hostile(span)


def test_an_asyncio_handler_raising_an_unprintable_error_ends_its_process_spans(
    exporter: InMemorySpanExporter,
) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(_url(), max_deliveries=2) as broker:
            worker = brokerkit.aio.Worker(broker)

            @worker.handler("t")
            async def handle(body: Any) -> None:
                raise Hostile()

            await broker.publish("t", 1)
            async with worker.running():
                deadline = time.monotonic() + 20
                while (await broker.inspect("t")).dead_lettered < 1:
                    assert time.monotonic() < deadline, "timed out waiting for the dead letter"
                    await asyncio.sleep(0.02)  # polling with a deadline

    asyncio.run(main())
    wait_until(lambda: len(_spans(exporter, "process t")) == 2, "both process spans")
    spans = _spans(exporter, "process t")
    settlements = sorted(str((s.attributes or {})["brokerkit.settlement"]) for s in spans)
    assert settlements == ["dead-letter", "nack"]
    for span in spans:
        _assert_records_hostile(span)


def test_a_publish_failing_with_an_unprintable_error_ends_its_send_span(
    exporter: InMemorySpanExporter,
) -> None:
    with brokerkit.connect(_url()) as broker:
        headers: dict[str, str] = {}
        scope = RELAY.publish_start(broker, "t", headers, 1)
        assert scope is not None
        RELAY.publish_end(broker, "t", [], Hostile(), scope)
    (span,) = _spans(exporter, "send t")
    _assert_records_hostile(span)


def test_the_topic_collector_logs_an_unprintable_listing_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def topics() -> list[str]:
        raise Hostile()

    with brokerkit.connect(_url()) as broker:
        registry = CollectorRegistry()
        registry.register(TopicCollector(broker, topics))
        with caplog.at_level(logging.WARNING, logger="brokerkit.instrumentation"):
            text = generate_latest(registry).decode()
    assert "brokerkit_topics_listed 0.0" in text
    messages = [r.getMessage() for r in caplog.records if r.name == "brokerkit.instrumentation"]
    assert any(
        m.startswith("could not list the topics") and m.endswith("<Hostile: str() failed>")
        for m in messages
    ), messages
