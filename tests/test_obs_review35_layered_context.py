"""A delivery's context is laid over the current one, never put in its place: in a
worker's handler, the application's own context values (baggage set around
``worker.running()``, a key of its own) and another plugin's handler context survive, the
delivery's keys (its span; its baggage, whole, when it carried some) win.
``current_context(delivery)`` is made the same way at each call (the caller's context as
it is when no span is open), and what the headers carried is read on an empty base, so
the caller's baggage never passes for the message's, whatever the propagators' order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import brokerkit
import brokerkit.aio
from brokerkit._hooks import HANDLER_CONTEXT, get_plugin_manager
from brokerkit.hookspecs import hookimpl
from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor, current_context
from tests.spans import instrument
from tests.waiting import wait_until, wait_until_async

APP_KEY = context.create_key("obs35-app")
PLUGIN_KEY = context.create_key("obs35-plugin")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """An exporter; brokerkit is instrumented by the test itself (when it publishes)."""
    exported = InMemorySpanExporter()
    try:
        yield exported
    finally:
        BrokerkitInstrumentor().uninstrument()


def _url() -> str:
    return f"memory://obs35-layer-{uuid.uuid4().hex}"


def _ambient() -> context.Context:
    """The application's own context: baggage of its own and a key of its own."""
    return context.set_value(APP_KEY, "app", baggage.set_baggage("deployment", "blue"))


@pytest.mark.parametrize("message", ["untraced", "traced", "with-baggage"])
def test_a_handler_keeps_the_applications_context_under_the_deliverys(
    exporter: InMemorySpanExporter, message: str
) -> None:
    """Published untraced (before instrument()), traced without baggage, or traced with
    baggage of its own (which then replaces the application's baggage whole)."""
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with brokerkit.aio.connect(_url()) as broker:
            if message == "untraced":
                await broker.publish("a", 1)
                instrument(exporter)
            else:
                instrument(exporter)
                published = (
                    baggage.set_baggage("tenant", "acme")
                    if message == "with-baggage"
                    else context.Context()
                )
                token = context.attach(published)
                try:
                    await broker.publish("a", 1)
                finally:
                    context.detach(token)
            worker = brokerkit.aio.Worker(broker)
            done = asyncio.Event()

            @worker.handler("a")
            async def handle(body: Any) -> None:
                seen["baggage"] = dict(baggage.get_all())
                seen["app"] = context.get_value(APP_KEY)
                seen["span"] = trace.get_current_span().get_span_context()
                done.set()

            token = context.attach(_ambient())
            try:
                async with worker.running():
                    await wait_until_async(done.is_set, "handled")
            finally:
                context.detach(token)

    asyncio.run(main())
    assert seen["app"] == "app"
    if message == "with-baggage":  # the message's baggage, whole
        assert seen["baggage"] == {"tenant": "acme"}
    else:
        assert seen["baggage"] == {"deployment": "blue"}
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert seen["span"].span_id == spans["process a"].context.span_id
    if message != "untraced":
        process = spans["process a"]
        assert process.parent is not None
        assert process.parent.span_id == spans["send a"].context.span_id


class _PluginContext:
    """A plugin that runs each handler with a context value of its own."""

    @hookimpl
    def brokerkit_deliver_start(self, delivery: Any, scope: dict[str, Any]) -> None:
        @contextlib.contextmanager
        def plugin_value() -> Iterator[None]:
            token = context.attach(context.set_value(PLUGIN_KEY, "plugin"))
            try:
                yield
            finally:
                context.detach(token)

        scope.setdefault(HANDLER_CONTEXT, []).append(plugin_value)


def test_another_plugins_handler_context_survives(exporter: InMemorySpanExporter) -> None:
    instrument(exporter)
    # registered after: its handler context is entered before OpenTelemetry's
    plugin = _PluginContext()
    get_plugin_manager().register(plugin, name=f"obs35-plugin-{uuid.uuid4().hex}")
    seen: list[tuple[object, bool]] = []
    try:
        with brokerkit.connect(_url()) as broker:
            worker = brokerkit.Worker(broker)

            @worker.handler("a")
            def handle(body: Any) -> None:
                span = trace.get_current_span().get_span_context()
                seen.append((context.get_value(PLUGIN_KEY), span.is_valid))

            broker.publish("a", 1)
            with worker.running():
                wait_until(lambda: seen, "handled")
    finally:
        get_plugin_manager().unregister(plugin)
    assert seen == [("plugin", True)]


def _attached_span(delivery: Any) -> trace.SpanContext:
    token = context.attach(current_context(delivery))
    try:
        return trace.get_current_span().get_span_context()
    finally:
        context.detach(token)


def test_current_context_without_a_span_keeps_the_callers() -> None:
    """Not instrumented, and instrumented but settled: attaching current_context(d)
    leaves the caller's span (and the rest of its context) current."""
    tracer = TracerProvider().get_tracer("obs35")
    exported = InMemorySpanExporter()
    with brokerkit.connect(_url()) as broker:
        broker.publish("a", 1)
        with broker.subscribe("a", group="g") as sub, tracer.start_as_current_span("batch"):
            caller = trace.get_current_span().get_span_context()
            delivery = sub.receive(0)
            assert delivery is not None
            assert _attached_span(delivery) == caller
            delivery.ack()
        instrument(exported)
        try:
            broker.publish("a", 2)
            with broker.subscribe("a", group="g") as sub, tracer.start_as_current_span("batch"):
                caller = trace.get_current_span().get_span_context()
                delivery = sub.receive(0)
                assert delivery is not None
                assert _attached_span(delivery) != caller  # its process span, open
                delivery.ack()
                assert _attached_span(delivery) == caller
        finally:
            BrokerkitInstrumentor().uninstrument()


@pytest.fixture
def propagators(request: pytest.FixtureRequest) -> Iterator[None]:
    """The global propagator: tracecontext and baggage in the order the test names."""
    before = propagate.get_global_textmap()
    made = {"tracecontext": TraceContextTextMapPropagator(), "baggage": W3CBaggagePropagator()}
    propagate.set_global_textmap(CompositePropagator([made[p] for p in request.param]))
    try:
        yield
    finally:
        propagate.set_global_textmap(before)


@pytest.mark.parametrize(
    "propagators", [("tracecontext", "baggage"), ("baggage", "tracecontext")], indirect=True
)
def test_the_callers_baggage_is_no_messages(
    propagators: None, exporter: InMemorySpanExporter
) -> None:
    """A traced message without baggage, received under the caller's baggage: the
    delivery's context holds none of it once the caller's is gone; its span has the
    producer's as parent. An untraced one received inside the caller's span is a root
    span (the caller's span is no producer's), unlinked."""
    instrument(exporter)
    tracer = TracerProvider().get_tracer("obs35")
    with brokerkit.connect(_url()) as broker:
        broker.publish("a", 1)
        with broker.subscribe("a", group="g") as sub:
            token = context.attach(baggage.set_baggage("caller", "yes"))
            try:
                delivery = sub.receive(0)
            finally:
                context.detach(token)
            assert delivery is not None
            assert dict(baggage.get_all(current_context(delivery))) == {}
            delivery.ack()
        before = {s.context.span_id for s in exporter.get_finished_spans()}
        BrokerkitInstrumentor().uninstrument()
        broker.publish("b", 1)
        instrument(exporter)
        with broker.subscribe("b", group="g") as sub, tracer.start_as_current_span("batch"):
            delivery = sub.receive(0)
            assert delivery is not None
            delivery.ack()
    (process,) = [s for s in exporter.get_finished_spans() if s.context.span_id not in before]
    assert process.name == "process b"
    assert process.parent is None
    assert list(process.links) == []
