"""``instrument()`` twice, and from two threads at once: one instrumentation, never an
error (pluggy refused the second registration of the plugin's name: ValueError)."""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import brokerkit
from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor
from tests.waiting import wait_until

_NAME = "brokerkit.instrumentation.opentelemetry"


class _HeldProvider(TracerProvider):
    """A tracer provider whose ``get_tracer`` (called inside ``instrument()``) waits
    until :attr:`go` is set: an instrument() under way."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.go = threading.Event()

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        self.inside.set()
        assert self.go.wait(30), "the test never let instrument() go on"
        return super().get_tracer(*args, **kwargs)


@pytest.fixture(autouse=True)
def uninstrumented() -> Iterator[None]:
    yield
    BrokerkitInstrumentor().uninstrument()


def _registered() -> list[Any]:
    return [p for n, p in brokerkit.get_plugin_manager().list_name_plugin() if n == _NAME]


def _waits_for_the_other(thread: threading.Thread) -> bool:
    """Whether ``thread`` has ended, or waits in BrokerkitInstrumentor's own
    ``instrument`` (for the call under way in another thread to end)."""
    if not thread.is_alive():
        return True
    own = BrokerkitInstrumentor.__dict__.get("instrument")
    frame = sys._current_frames().get(thread.ident or -1)
    return own is not None and frame is not None and frame.f_code is own.__code__


def _call(errors: list[BaseException], **kwargs: Any) -> threading.Thread:
    def run() -> None:
        try:
            BrokerkitInstrumentor().instrument(**kwargs)
        except BaseException as exc:  # reported by the test's assertions
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_instrument_from_two_threads_at_once_instruments_once() -> None:
    held = _HeldProvider()
    exported = InMemorySpanExporter()
    held.add_span_processor(SimpleSpanProcessor(exported))
    errors: list[BaseException] = []
    first = _call(errors, tracer_provider=held)
    assert held.inside.wait(30)
    second = _call(errors, tracer_provider=TracerProvider())
    wait_until(lambda: _waits_for_the_other(second), "the second instrument()", within=30)
    held.go.set()
    first.join(30)
    second.join(30)
    assert errors == []
    assert len(_registered()) == 1
    with brokerkit.connect(f"memory://obs31-{uuid.uuid4().hex}") as broker:
        broker.publish("orders", 1)
    assert [s.name for s in exported.get_finished_spans()] == ["send orders"]


def test_instrument_twice_is_one_instrumentation() -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    BrokerkitInstrumentor().instrument(tracer_provider=provider)
    BrokerkitInstrumentor().instrument(tracer_provider=TracerProvider())
    assert len(_registered()) == 1
    with brokerkit.connect(f"memory://obs31-{uuid.uuid4().hex}") as broker:
        broker.publish("orders", 1)
    assert [s.name for s in exported.get_finished_spans()] == ["send orders"]
    BrokerkitInstrumentor().uninstrument()
    BrokerkitInstrumentor().uninstrument()
    assert _registered() == []
