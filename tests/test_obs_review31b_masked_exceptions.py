"""The exception event and status of a span whose error is, or was raised from or
during, a pydantic or msgspec validation error (thirty-first review of the
OpenTelemetry instrumentation): its message and stacktrace tell that error as the
worker logs it, every frame kept, never the values it refused; any other error is
recorded by the SDK's ``record_exception`` as before."""

from __future__ import annotations

import builtins
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import ConnectionFailed
from brokerkit.worker import Immediate
from tests.spans import recorded_spans
from tests.test_worker_review31_masked_tracebacks import (
    AGE_TEXT,
    SECRET,
    User,
    converts_with_msgspec,
    fails_plainly,
    raises_from_it,
    validates_itself,
)
from tests.waiting import wait_until
from tests.worker_runs import DEADLINE, dead_letter, dead_lettered_async

VALIDATION = "pydantic_core._pydantic_core.ValidationError"


def fails_while_handling_it(body: dict[str, Any]) -> None:
    try:
        User.model_validate(body)
    except pydantic.ValidationError:
        raise LookupError("no fallback either")  # noqa: B904  (during it, not from it)


def fails_as_a_group(body: dict[str, Any]) -> None:
    try:
        User.model_validate(body)
    except pydantic.ValidationError as exc:
        group = vars(builtins)["BaseExceptionGroup"]
        raise group("two failed", [exc, KeyError("kept")]) from None


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exported:
        yield exported


def _processed(exporter: InMemorySpanExporter, topic: str, handler: Any, body: Any) -> ReadableSpan:
    """The ``process`` span of ``body`` handled by ``handler`` (failing: dead-lettered
    at once) under a sync worker on a memory broker."""
    dead_letter(topic, handler, body, retry=Immediate(max_attempts=1))
    return _one_span(exporter, f"process {topic}")


def _one_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found: list[ReadableSpan] = []
    wait_until(
        lambda: (
            bool(found.extend(s for s in exporter.get_finished_spans() if s.name == name))
            or len(found) > 0
        ),
        f"the span {name!r}",
        within=DEADLINE,
    )
    assert len(found) == 1, found
    return found[0]


def _exception(span: ReadableSpan) -> dict[str, Any]:
    events = [event for event in span.events if event.name == "exception"]
    assert len(events) == 1, span.events
    return dict(events[0].attributes or {})


def _assert_masked(span: ReadableSpan) -> dict[str, Any]:
    """No value of the body anywhere on ``span``; its exception event's attributes."""
    event = _exception(span)
    everything = repr(event) + repr(span.status.description) + repr(dict(span.attributes or {}))
    assert "hunter2" not in everything and "input_value" not in everything, everything
    assert span.status.status_code is StatusCode.ERROR
    assert set(event) == {
        "exception.type",
        "exception.message",
        "exception.stacktrace",
        "exception.escaped",
    }
    assert event["exception.escaped"] == "False"  # as record_exception says by default
    return event


@pytest.mark.parametrize(
    ("handler", "kind", "message", "last_line"),
    [
        (validates_itself, VALIDATION, AGE_TEXT, f"{VALIDATION}: {AGE_TEXT}"),
        (
            raises_from_it,
            "RuntimeError",
            "the order could not be read",
            "RuntimeError: the order could not be read",
        ),
        (
            fails_while_handling_it,
            "LookupError",
            "no fallback either",
            "LookupError: no fallback either",
        ),
        (
            converts_with_msgspec,
            "msgspec.ValidationError",
            "Invalid enum value - at `$[...]`",
            "msgspec.ValidationError: Invalid enum value - at `$[...]`",
        ),
    ],
    ids=["own", "raised-from", "during", "msgspec"],
)
def test_the_process_span_records_the_frames_not_the_values(
    exporter: InMemorySpanExporter, handler: Any, kind: str, message: str, last_line: str
) -> None:
    body = {"k": SECRET} if handler is converts_with_msgspec else {"age": SECRET}
    span = _processed(exporter, f"obs31b-{handler.__name__}", handler, body)
    event = _assert_masked(span)
    assert event["exception.type"] == kind
    assert event["exception.message"] == message
    stacktrace = event["exception.stacktrace"]
    assert stacktrace.startswith("Traceback (most recent call last):"), stacktrace
    assert f"in {handler.__name__}" in stacktrace  # the handler's frame is kept
    assert stacktrace.rstrip().endswith(last_line), stacktrace
    if handler in (raises_from_it, fails_while_handling_it):
        assert f"ValidationError: {AGE_TEXT}" in stacktrace, stacktrace
    assert span.status.description == f"{kind.rsplit('.', 1)[-1]}: {message}"
    assert dict(span.attributes or {})["error.type"] == kind


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are Python 3.11's")
def test_a_group_holding_a_validation_error_is_masked_and_keeps_the_others(
    exporter: InMemorySpanExporter,
) -> None:
    span = _processed(exporter, "obs31b-group", fails_as_a_group, {"age": SECRET})
    event = _assert_masked(span)
    stacktrace = event["exception.stacktrace"]
    assert AGE_TEXT in stacktrace and "KeyError: 'kept'" in stacktrace, stacktrace


def test_the_async_worker_s_span_is_masked_too(exporter: InMemorySpanExporter) -> None:
    topic = "obs31b-async"

    async def job(body: dict[str, Any]) -> None:
        User.model_validate(body)

    dead_lettered_async(topic, job, {"age": SECRET}, retry=Immediate(max_attempts=1))
    event = _assert_masked(_one_span(exporter, f"process {topic}"))
    assert event["exception.message"] == AGE_TEXT
    assert "in job" in event["exception.stacktrace"]


def test_another_error_is_recorded_by_record_exception_as_before(
    exporter: InMemorySpanExporter,
) -> None:
    span = _processed(exporter, "obs31b-plain", fails_plainly, {"age": 1})
    event = _exception(span)
    assert event["exception.type"] == "ConnectionError"
    assert event["exception.message"] == "gateway timeout"
    assert event["exception.escaped"] == "False"
    stacktrace = event["exception.stacktrace"]
    assert "in fails_plainly" in stacktrace
    assert stacktrace.rstrip().endswith("ConnectionError: gateway timeout"), stacktrace
    assert span.status.description == "ConnectionError: gateway timeout"


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_publish_failing_while_handling_a_validation_error_is_masked(
    exporter: InMemorySpanExporter,
) -> None:
    """The send span of a publish that fails (no Redis answers) in an ``except``
    block of a ValidationError: Python prints that error as the context of the
    client's own, and the span recorded its input."""
    url = f"redis+list://127.0.0.1:{_closed_port()}/0"
    with brokerkit.connect(url, reconnect_timeout=0) as broker:
        try:
            User.model_validate({"age": SECRET})
        except pydantic.ValidationError:
            with pytest.raises(ConnectionFailed):
                broker.publish("obs31b-orders", {"fallback": True})
    span = _one_span(exporter, "send obs31b-orders")
    event = _assert_masked(span)
    assert event["exception.type"] == "brokerkit.exceptions.ConnectionFailed"
    stacktrace = event["exception.stacktrace"]
    assert f"ValidationError: {AGE_TEXT}" in stacktrace, stacktrace
    assert "During handling of the above exception" in stacktrace
    assert (
        stacktrace.rstrip()
        .splitlines()[-1]
        .startswith("brokerkit.exceptions.ConnectionFailed: could not connect")
    ), stacktrace
