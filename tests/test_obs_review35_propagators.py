"""What the global propagator writes goes into a message's headers, and what it reads
from them is the delivery's context: a non-default global propagator (tracecontext,
baggage and a propagator of the test's own with its own header), on memory:// and on a
real redis+list."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import brokerkit
from brokerkit.instrumentation.opentelemetry import current_context
from tests.conftest import RedisTarget
from tests.spans import recorded_spans
from tests.waiting import wait_until

ROUTE = context.create_key("obs35-route")
HEADER = "x-obs35-route"


class RoutePropagator(TextMapPropagator):
    """Writes the context's ROUTE into its own header, and reads it back."""

    def __init__(self) -> None:
        self.injected = 0
        self.extracted = 0

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[Any] = default_setter,
    ) -> None:
        self.injected += 1
        route = context_value(context)
        if route is not None:
            setter.set(carrier, HEADER, str(route))

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[Any] = default_getter,
    ) -> Context:
        self.extracted += 1
        found = getter.get(carrier, HEADER)
        if not found:
            return context if context is not None else Context()
        return set_value(found[0] if isinstance(found, list) else found, context)

    @property
    def fields(self) -> set[str]:
        return {HEADER}


def context_value(ctx: Context | None) -> object:
    return context.get_value(ROUTE, ctx)


def set_value(value: str, ctx: Context | None) -> Context:
    return context.set_value(ROUTE, value, ctx)


@pytest.fixture
def route() -> Iterator[RoutePropagator]:
    """The global propagator, made of tracecontext, baggage and a RoutePropagator, while
    the test runs; the one before it is restored after."""
    before = propagate.get_global_textmap()
    own = RoutePropagator()
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator(), own])
    )
    try:
        yield own
    finally:
        propagate.set_global_textmap(before)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exported:
        yield exported


def _publish(broker: Any, topic: str) -> str:
    """Publish under a context holding a route and baggage."""
    ctx = set_value("eu-west", baggage.set_baggage("tenant", "acme"))
    token = context.attach(ctx)
    try:
        return str(broker.publish(topic, {"n": 1}))
    finally:
        context.detach(token)


def _check(broker: Any, topic: str, route: RoutePropagator, exporter: InMemorySpanExporter) -> None:
    _publish(broker, topic)
    assert route.injected == 1
    for delivery in broker.consume(topic, group="g", timeout=5, limit=1):
        assert delivery.headers[HEADER] == "eu-west"
        assert "tenant=acme" in delivery.headers["baggage"]
        assert "traceparent" in delivery.headers
        assert route.extracted == 1
        processed = current_context(delivery)
        assert context_value(processed) == "eu-west"
        assert baggage.get_baggage("tenant", processed) == "acme"
        assert trace.get_current_span(processed).get_span_context().is_valid
        delivery.ack()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    send, process = spans[f"send {topic}"], spans[f"process {topic}"]
    assert process.parent is not None and process.parent.span_id == send.context.span_id


def test_memory_carries_what_the_global_propagator_writes(
    route: RoutePropagator, exporter: InMemorySpanExporter
) -> None:
    with brokerkit.connect(f"memory://obs35-prop-{uuid.uuid4().hex}") as broker:
        _check(broker, "orders", route, exporter)


def test_redis_list_carries_what_the_global_propagator_writes(
    route: RoutePropagator,
    exporter: InMemorySpanExporter,
    redis_target: RedisTarget,
    prefix: str,
) -> None:
    with brokerkit.connect(redis_target.url("redis+list", prefix=prefix)) as broker:
        _check(broker, f"orders-{uuid.uuid4().hex[:8]}", route, exporter)


def test_a_workers_handler_runs_in_what_the_global_propagator_read(
    route: RoutePropagator, exporter: InMemorySpanExporter
) -> None:
    seen: list[object] = []
    with brokerkit.connect(f"memory://obs35-prop-{uuid.uuid4().hex}") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("a")
        def handle(body: Any) -> None:
            seen.append((context_value(None), baggage.get_baggage("tenant")))
            broker.publish("b", body)

        _publish(broker, "a")
        with worker.running():
            wait_until(lambda: broker.inspect("b").length == 1, "'a' handled, 'b' sent")
        (forwarded,) = list(broker.consume("b", timeout=0, limit=1))
        forwarded.ack()
    assert seen == [("eu-west", "acme")]
    # the handler's publish carried both on
    assert forwarded.headers[HEADER] == "eu-west"
    assert "tenant=acme" in forwarded.headers["baggage"]
