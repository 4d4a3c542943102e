"""A pattern subscription's ``process`` spans are named by its pattern, given as
``messaging.destination.template`` (the messaging conventions want a span name of low
cardinality: the template when there is one), the topic each delivery came from staying
``messaging.destination.name``: on redis+pubsub any client may PUBLISH to any channel
the glob matches, and each distinct channel made a span name of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")
pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import RedisTarget
from tests.spans import recorded_spans
from tests.test_observability_review28_pattern_labels import (
    FOREIGN,
    foreign_deliveries,
    memory_pattern_round,
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exported:
        yield exported


def test_a_pattern_subscriptions_spans_are_named_by_its_pattern(
    redis_target: RedisTarget, prefix: str, exporter: InMemorySpanExporter
) -> None:
    topics = foreign_deliveries(redis_target, prefix)
    spans = [s for s in exporter.get_finished_spans() if s.name.startswith("process")]
    assert [s.name for s in spans] == ["process chat:*"] * len(FOREIGN)
    for span, topic in zip(spans, topics, strict=True):
        attributes = span.attributes or {}
        assert attributes["messaging.destination.template"] == "chat:*"
        assert attributes["messaging.destination.name"] == topic  # the topic itself


def test_an_asyncio_pattern_subscription_on_memory(exporter: InMemorySpanExporter) -> None:
    memory_pattern_round(dead_letter=False)
    spans = exporter.get_finished_spans()
    processed = [s for s in spans if s.name.startswith("process")]
    assert [s.name for s in processed] == ["process user.*"] * 3
    assert sorted((s.attributes or {})["messaging.destination.name"] for s in processed) == [
        "user.0",
        "user.1",
        "user.2",
    ]
    # the publishes name the topics the application chose
    sent = sorted(s.name for s in spans if s.name.startswith("send"))
    assert sent == ["send user.0", "send user.1", "send user.2"]
