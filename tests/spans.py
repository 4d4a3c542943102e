"""The spans brokerkit's OpenTelemetry instrumentation exports, kept in memory for a
test (import it after ``pytest.importorskip("opentelemetry.sdk")``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor

__all__ = ["instrument", "recorded_spans"]


def instrument(exported: InMemorySpanExporter, provider: TracerProvider | None = None) -> None:
    """Instrument brokerkit with ``provider`` (by default a new one), which then
    exports every span it ends to ``exported`` too."""
    provider = TracerProvider() if provider is None else provider
    provider.add_span_processor(SimpleSpanProcessor(exported))
    BrokerkitInstrumentor().instrument(tracer_provider=provider)


@contextmanager
def recorded_spans(provider: TracerProvider | None = None) -> Iterator[InMemorySpanExporter]:
    """brokerkit instrumented with ``provider`` (by default a tracer provider of its
    own) while the block runs; yields the exporter that holds every span it ended."""
    exported = InMemorySpanExporter()
    instrument(exported, provider)
    try:
        yield exported
    finally:
        BrokerkitInstrumentor().uninstrument()
