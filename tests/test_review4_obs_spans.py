"""OpenTelemetry spans: each delivery a ``for ... in subscription`` loop handed out ends
its span (on a backend with ACK: settled, or "unsettled" when the subscription closes),
and a failed operation's span says ``error.type``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import brokerkit
import brokerkit.aio
from tests.spans import recorded_spans


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exported:
        yield exported


def _url() -> str:
    return f"memory://obs-spans-{uuid.uuid4().hex}"


def _process_spans(exporter: InMemorySpanExporter) -> list[str]:
    spans = exporter.get_finished_spans()
    exporter.clear()
    return [
        str((s.attributes or {}).get("brokerkit.settlement"))
        for s in spans
        if s.name.startswith("process")
    ]


@settings(max_examples=20, deadline=None)
@given(published=st.integers(1, 6), data=st.data())
def test_iterating_a_subscription_ends_the_span_of_each_delivery_it_hands_out(
    exporter: InMemorySpanExporter, published: int, data: st.DataObject
) -> None:
    taken = data.draw(st.integers(1, published))
    acked = data.draw(st.sets(st.integers(0, taken - 1)))
    exporter.clear()
    with brokerkit.connect(_url()) as broker:
        broker.publish_many("a", list(range(published)))
        held = []  # a delivery dropped unsettled and collected never ends its span
        with broker.subscribe("a") as subscription:
            for number, delivery in enumerate(subscription):
                held.append(delivery)
                if number in acked:
                    delivery.ack()
                if number == taken - 1:
                    break
    outcomes = _process_spans(exporter)
    assert sorted(outcomes) == sorted(["ack"] * len(acked) + ["unsettled"] * (taken - len(acked)))


def test_iterating_an_asyncio_subscription_ends_the_span_of_each_delivery(
    exporter: InMemorySpanExporter,
) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(_url()) as broker:
            await broker.publish_many("a", [1, 2, 3])
            async with await broker.subscribe("a") as subscription:
                number = 0
                held = []
                async for delivery in subscription:
                    held.append(delivery)
                    number += 1
                    if number == 2:
                        await delivery.ack()
                    if number == 3:
                        break

    exporter.clear()
    asyncio.run(main())
    assert sorted(_process_spans(exporter)) == ["ack", "unsettled", "unsettled"]


def test_failed_operations_say_their_error_type(exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    with brokerkit.connect(_url()) as broker:
        with pytest.raises(brokerkit.BrokerError):
            broker.publish("t", object())  # cannot be encoded
        broker.publish_many("t", [1, 2])
        with broker.subscribe("t") as subscription:
            first = subscription.receive(timeout=1)
            assert first is not None
            first.nack(requeue=False)  # dead-lettered, no exception
            second = subscription.receive(timeout=1)
            assert second is not None
            second.ack()
    spans = exporter.get_finished_spans()
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    fine = [s for s in spans if s.status.status_code is not StatusCode.ERROR]
    assert sorted((s.name, (s.attributes or {}).get("error.type")) for s in failed) == [
        ("process t", "dead-letter"),
        ("send t", "brokerkit.exceptions.SerializationError"),
    ]
    assert fine and all("error.type" not in (s.attributes or {}) for s in fine)
