"""A delivery's ``baggage`` header reaches OpenTelemetry's propagator with its
well-formed list-members only: a malformed one (no ``=``, a key or value outside W3C
baggage's characters, too long, past the 180th) is left out silently, where the
propagator logged each whole (a WARNING of up to 8 KB at every delivery of a hostile
publisher's message). Well-formed baggage reads as before, and so does the trace."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry import baggage, context, propagate
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import brokerkit
from brokerkit.instrumentation.opentelemetry import _carrier
from tests.spans import recorded_spans

HOSTILE = [
    "x" * 8000,  # one list-member without '=', logged whole
    ",".join(["k=v"] * 200) + ",bad" * 100,  # too many members, malformed ones
    "k=" + "v" * 5000,  # a member over 4096 characters
    "k=" + "\u00e9" * 4000,  # not ASCII
    'a b=1,k=v;,=v,k="quoted",k=v\\w',  # a key with a space, an empty property, ...
    " \t ",
]

WELL_FORMED = [
    "k=v",
    "userId=alice,serverNode=DF%2028,isProduction=false",
    " a = 1 , b=2;prop;p2 = x ,c=",
    "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
    ",".join(f"k{i}=v" for i in range(180)),
]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exported:
        yield exported


def otel_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What OpenTelemetry's own loggers logged (the first 120 characters of each)."""
    return [r.getMessage()[:120] for r in caplog.records if r.name.startswith("opentelemetry")]


def delivered_with(
    name: str, values: list[str], exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> list[ReadableSpan]:
    """Publish a message with each of ``values`` as its header ``name`` on a memory
    broker, receive and ack it (the application reads the header as published), with
    OpenTelemetry logging nothing meanwhile; the process spans, each checked to be the
    child of its send span (the trace context read all the same)."""
    url = f"memory://obs31c-{uuid.uuid4().hex}"
    with (
        brokerkit.connect(url) as broker,
        broker.subscribe("orders", group="g") as subscription,
        caplog.at_level(logging.DEBUG),
    ):
        for value in values:
            broker.publish("orders", "x", headers={name: value})
            delivery = subscription.receive(5)
            assert delivery is not None
            assert delivery.headers[name] == value  # the application's
            delivery.ack()
    assert otel_records(caplog) == []
    spans = {s.context.span_id: s for s in exporter.get_finished_spans()}
    processes = [s for s in spans.values() if s.name == "process orders"]
    assert len(processes) == len(values)
    for process in processes:
        assert process.parent is not None
        assert spans[process.parent.span_id].name == "send orders"
    return processes


def test_a_hostile_baggage_header_is_left_out_without_a_log_line(
    exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    delivered_with("baggage", HOSTILE, exporter, caplog)


@pytest.mark.parametrize("header", WELL_FORMED)
def test_well_formed_baggage_reads_as_opentelemetry_reads_it(
    header: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        read = baggage.get_all(propagate.extract(_carrier({"baggage": header})))
        assert read == baggage.get_all(propagate.extract({"baggage": header}))
    assert read
    assert otel_records(caplog) == []


def test_the_well_formed_members_of_a_partly_malformed_header_are_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        read = baggage.get_all(
            propagate.extract(_carrier({"baggage": "a=1,bad,b=2;p, c d=3," + "x" * 5000}))
        )
    assert read == {"a": "1", "b": "2;p"}
    assert otel_records(caplog) == []


def test_baggage_set_by_the_publisher_reaches_the_consumer(
    exporter: InMemorySpanExporter,
) -> None:
    token = context.attach(baggage.set_baggage("user.id", "alice smith/42"))
    try:
        url = f"memory://obs31c-{uuid.uuid4().hex}"
        with brokerkit.connect(url) as broker, broker.subscribe("orders") as subscription:
            broker.publish("orders", "x")
            delivery = subscription.receive(5)
            assert delivery is not None
            delivery.ack()
    finally:
        context.detach(token)
    read = baggage.get_all(propagate.extract(_carrier(delivery.headers)))
    assert read == {"user.id": "alice smith/42"}
