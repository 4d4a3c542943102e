"""A delivery's malformed ``tracestate`` header (a list-member W3C trace context does
not allow, more than 32 of them) is left out silently, as OpenTelemetry drops it, where
its propagator logged the member whole (a WARNING of up to 8 KB at every delivery of a
hostile publisher's message); a well-formed one reads as before, with the trace."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from brokerkit.instrumentation.opentelemetry import _carrier
from tests.test_obs_review31c_baggage import delivered_with, exporter, otel_records

__all__ = ["exporter"]  # a fixture

PARENT = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"

HOSTILE = [
    "k=" + "v" * 8000,
    "a" * 8000,
    ",".join(f"k{i}=v" for i in range(40)),
    "congo=t61rcWkgMzE,Bad Key=" + "x" * 4000,
]


def test_a_hostile_tracestate_is_left_out_without_a_log_line(
    exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    for process in delivered_with("tracestate", HOSTILE, exporter, caplog):
        assert process.parent is not None
        assert len(process.parent.trace_state) == 0


@pytest.mark.parametrize(
    "header",
    [
        "congo=t61rcWkgMzE",
        "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE ,,tenant@vendor=a b",
        ",".join(f"k{i}=v" for i in range(32)),
    ],
)
def test_a_well_formed_tracestate_reads_as_opentelemetry_reads_it(
    header: str, caplog: pytest.LogCaptureFixture
) -> None:
    def state(carrier: dict[str, str]) -> list[tuple[str, str]]:
        context = propagate.extract(carrier)
        return list(trace.get_current_span(context).get_span_context().trace_state.items())

    with caplog.at_level(logging.DEBUG):
        read = state(_carrier({"traceparent": PARENT, "tracestate": header}))
        assert read == state({"traceparent": PARENT, "tracestate": header})
    assert read
    assert otel_records(caplog) == []
