"""The trace context through every backend's headers, and hostile header values: a
malformed or huge ``traceparent``, ``tracestate`` or ``baggage`` never breaks a
delivery, its span is a root span then, and no log line carries the whole value."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import brokerkit
from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor
from tests.kombu_rabbitmq import kombu_broker, rabbitmq
from tests.nats_server import nats
from tests.spans import recorded_spans

__all__ = ["kombu_broker", "nats", "rabbitmq"]  # fixtures

#: Larger than any trace context header may be (baggage: 8192 bytes), small enough
#: for every backend's headers (an AMQP frame, JetStream's 64 KiB of headers).
HUGE = 12_000

BACKENDS = ["memory", "redis+list", "redis+stream", "redis+pubsub", "kombu+amqp", "nats"]


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider()


@pytest.fixture
def exporter(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    with recorded_spans(provider) as exported:
        yield exported


@pytest.fixture(params=BACKENDS)
def broker(request: pytest.FixtureRequest) -> Iterator[Any]:
    scheme = request.param
    if scheme == "memory":
        with brokerkit.connect(f"memory://obs31-{uuid.uuid4().hex}") as memory:
            yield memory
    elif scheme.startswith("redis"):
        yield request.getfixturevalue("redis_broker")(scheme)
    elif scheme == "kombu+amqp":
        yield request.getfixturevalue("kombu_broker")()
    else:
        yield request.getfixturevalue("nats")()


def _received(broker: Any, publish: Callable[[], None], count: int) -> list[Any]:
    """Subscribe (first: redis+pubsub keeps nothing for an absent subscriber), publish,
    receive ``count`` deliveries and ack them."""
    topic = "obs31.orders"
    with broker.subscribe(topic) as subscription:
        publish()
        got = []
        for _ in range(count):
            delivery = subscription.receive(10)
            assert delivery is not None, f"only {len(got)} of {count} delivered"
            delivery.ack()
            got.append(delivery)
    return got


def test_the_consumer_span_is_a_child_of_the_producer_span_on_every_backend(
    broker: Any, exporter: InMemorySpanExporter
) -> None:
    _received(broker, lambda: broker.publish("obs31.orders", {"n": 1}), 1)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    send, process = spans["send obs31.orders"], spans["process obs31.orders"]
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.context.trace_id == send.context.trace_id


def test_hostile_trace_headers_never_break_a_delivery_nor_flood_the_log(
    broker: Any,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hostile = [
        {"traceparent": "garbage"},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},  # all-zero ids
        {"traceparent": "x" * HUGE},
        {"tracestate": "\u00e9=\u00e9," * (HUGE // 4)},
        {"baggage": "k=v," * (HUGE // 4)},
        {"baggage": "%" * HUGE, "tracestate": "=" * HUGE},
    ]

    def publish() -> None:
        BrokerkitInstrumentor().uninstrument()  # so that the headers go as written
        try:
            for headers in hostile:
                broker.publish("obs31.orders", "x", headers=headers)
        finally:
            BrokerkitInstrumentor().instrument(tracer_provider=provider)

    with caplog.at_level(logging.DEBUG):
        got = _received(broker, publish, len(hostile))
    assert [d.body for d in got] == ["x"] * len(hostile)
    processes = [s for s in exporter.get_finished_spans() if s.name == "process obs31.orders"]
    assert len(processes) == len(hostile)
    assert all(span.parent is None for span in processes)
    longest = max((len(r.getMessage()) for r in caplog.records), default=0)
    assert longest < 9_000, "a log line carried a whole hostile header"
