"""OpenTelemetry: spans, attributes and trace context, in one process and across two."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import brokerkit
import brokerkit.aio
from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor, current_span
from tests.conftest import RedisTarget
from tests.spans import recorded_spans


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exported:
        yield exported


def listing(spans: Any) -> str:
    """Spans as a tracing backend lists them: start order, indented under their parent."""
    spans = sorted(spans, key=lambda s: s.start_time)
    by_id = {s.context.span_id: s for s in spans}

    def depth(span: ReadableSpan) -> int:
        parent = span.parent
        return (
            0 if parent is None or parent.span_id not in by_id else 1 + depth(by_id[parent.span_id])
        )

    first = spans[0].start_time
    lines = []
    for span in spans:
        attrs = span.attributes or {}
        shown = {
            k: attrs[k]
            for k in (
                "messaging.system",
                "messaging.operation.type",
                "messaging.consumer.group.name",
                "brokerkit.delivery.attempt",
                "brokerkit.settlement",
            )
            if k in attrs
        }
        events = ",".join(e.name for e in span.events)
        lines.append(
            f"{'  ' * depth(span)}{span.name:<14} {span.kind.name:<8} "
            f"trace={span.context.trace_id:032x} span={span.context.span_id:016x} "
            f"+{(span.start_time - first) / 1e6:.1f}ms "
            f"status={span.status.status_code.name} {shown}"
            + (f" events=[{events}]" if events else "")
        )
    return "\n".join(lines)


def _url() -> str:
    return f"memory://otel-{uuid.uuid4().hex}"


def test_publish_nack_redeliver_ack(exporter: InMemorySpanExporter) -> None:
    with brokerkit.connect(_url()) as broker:
        message_id = broker.publish("orders", {"id": 1})
        with broker.subscribe("orders", group="billing") as sub:
            first = sub.receive(0)
            assert first is not None and "traceparent" in first.headers
            assert current_span(first).is_recording()
            first.nack()
            again = sub.receive(0)
            assert again is not None
            again.ack()
    print(listing(exporter.get_finished_spans()))
    send, process1, process2 = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)
    assert (send.name, send.kind) == ("send orders", SpanKind.PRODUCER)
    assert send.attributes is not None
    assert send.attributes["messaging.message.id"] == message_id
    assert send.attributes["messaging.destination.name"] == "orders"
    assert send.attributes["messaging.system"] == "memory"
    for process, attempt, outcome in ((process1, 1, "nack"), (process2, 2, "ack")):
        assert (process.name, process.kind) == ("process orders", SpanKind.CONSUMER)
        assert process.parent is not None and process.parent.span_id == send.context.span_id
        assert process.context.trace_id == send.context.trace_id
        assert [link.context.span_id for link in process.links] == [send.context.span_id]
        attrs = process.attributes or {}
        assert attrs["messaging.consumer.group.name"] == "billing"
        assert attrs["messaging.message.id"] == message_id
        assert attrs["messaging.operation.type"] == "process"
        assert attrs["brokerkit.delivery.attempt"] == attempt
        assert attrs["brokerkit.settlement"] == outcome
        assert process.status.status_code is StatusCode.UNSET
    assert [e.name for e in process1.events] == ["nack"]


def test_async_api_and_dead_letter_is_an_error(exporter: InMemorySpanExporter) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(_url()) as broker:
            await broker.publish_many("orders", [1, 2])
            async for delivery in broker.consume("orders", timeout=0):
                await delivery.nack(requeue=False)

    asyncio.run(main())
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)
    assert [s.name for s in spans] == ["send orders", "process orders", "process orders"]
    assert (spans[0].attributes or {})["messaging.batch.message_count"] == 2
    assert all(s.status.status_code is StatusCode.ERROR for s in spans[1:])
    assert all((s.attributes or {})["brokerkit.settlement"] == "dead-letter" for s in spans[1:])


def test_failed_publish_is_recorded(exporter: InMemorySpanExporter) -> None:
    with brokerkit.connect(_url()) as broker, pytest.raises(brokerkit.SerializationError):
        broker.publish("orders", object())
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_uninstrument_stops_tracing(exporter: InMemorySpanExporter) -> None:
    BrokerkitInstrumentor().uninstrument()
    with brokerkit.connect(_url()) as broker:
        broker.publish("orders", 1)
        for delivery in broker.consume("orders", timeout=0):
            assert "traceparent" not in delivery.headers
            delivery.ack()
    assert exporter.get_finished_spans() == ()


PUBLISHER = """
import sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import brokerkit
from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
BrokerkitInstrumentor().instrument(tracer_provider=provider)
with brokerkit.connect(sys.argv[1]) as broker:
    broker.publish(sys.argv[2], {"hello": "world"})
(span,) = exporter.get_finished_spans()
print(f"{span.context.trace_id:032x} {span.context.span_id:016x}")
"""


def test_trace_crosses_processes(
    exporter: InMemorySpanExporter, redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+stream", prefix=prefix)
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    published = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PUBLISHER), url, topic],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    trace_id, span_id = published.stdout.split()
    with brokerkit.connect(url) as broker:  # the test's private redis-server and prefix
        for delivery in broker.consume(topic, group="audit", timeout=5, limit=1):
            delivery.ack()
    (process,) = exporter.get_finished_spans()
    assert f"{process.context.trace_id:032x}" == trace_id
    assert process.parent is not None and f"{process.parent.span_id:016x}" == span_id
    assert process.parent.is_remote
    assert (process.attributes or {})["messaging.system"] == "redis"
    assert (process.attributes or {})["server.port"] == redis_target.port


@pytest.mark.parametrize(
    ("url", "system"),
    [
        ("memory://", "memory"),
        ("redis+list://h:6379/0", "redis"),
        ("rediss+stream://h:6379/0", "redis"),
        ("kombu+amqp://h//", "rabbitmq"),
        ("kombu+pyamqp://h//", "rabbitmq"),  # was "kombu"
        ("kombu+redis://h:6379/0", "redis"),  # was "kombu"
        ("nats://h:4222", "nats"),
    ],
)
def test_messaging_system_names_the_servers_kind(url: str, system: str) -> None:
    from brokerkit._url import BrokerURL
    from brokerkit.instrumentation.opentelemetry import _system

    broker = types.SimpleNamespace(url=BrokerURL.parse(url))
    assert _system(broker) == system
