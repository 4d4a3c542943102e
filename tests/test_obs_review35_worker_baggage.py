"""The context a delivery's headers carry (span AND baggage) is the current context while
a worker's handler runs, sync and asyncio: ``get_baggage`` in the handler sees the
publisher's baggage, and a publish from the handler carries it on. Outside a worker,
``current_context(delivery)`` is that same context, to attach around the application's
own code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import brokerkit
import brokerkit.aio
from tests.spans import recorded_spans
from tests.waiting import wait_until, wait_until_async


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exported:
        yield exported


def _url() -> str:
    return f"memory://obs35-baggage-{uuid.uuid4().hex}"


class Seen:
    """What the handler saw: the baggage and whether a span was current."""

    def __init__(self) -> None:
        self.tenant: list[object] = []
        self.span_valid: list[bool] = []

    def look(self) -> None:
        self.tenant.append(baggage.get_baggage("tenant"))
        self.span_valid.append(trace.get_current_span().get_span_context().is_valid)


def _with_baggage() -> object:
    return context.attach(baggage.set_baggage("tenant", "acme"))


def _handled(exporter: InMemorySpanExporter) -> bool:
    names = {s.name for s in exporter.get_finished_spans()}
    return {"process a", "send b"} <= names


def _forwarded(exporter: InMemorySpanExporter, headers: dict[str, str], seen: Seen) -> None:
    """The handler saw the baggage and a span; what it published carries the baggage
    and is a child of ``process a``."""
    assert seen.tenant == ["acme"]
    assert seen.span_valid == [True]
    assert "tenant=acme" in headers.get("baggage", "")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    send_b, process_a = spans["send b"], spans["process a"]
    assert send_b.parent is not None and send_b.parent.span_id == process_a.context.span_id
    # the handler's context is left behind it: nothing leaks into the caller's
    assert baggage.get_baggage("tenant") is None


def test_a_sync_workers_handler_sees_and_forwards_the_baggage(
    exporter: InMemorySpanExporter,
) -> None:
    seen = Seen()
    with brokerkit.connect(_url()) as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("a")
        def forward(body: Any) -> None:
            seen.look()
            broker.publish("b", body)

        token = _with_baggage()
        try:
            broker.publish("a", 1)
        finally:
            context.detach(token)
        with worker.running():
            wait_until(lambda: _handled(exporter), "'a' handled, 'b' sent")
        (delivery,) = list(broker.consume("b", timeout=0, limit=1))
        headers = dict(delivery.headers)
        delivery.ack()
    wait_until(lambda: len(exporter.get_finished_spans()) == 4, "the four spans")
    _forwarded(exporter, headers, seen)


@pytest.mark.parametrize("kind", ["coroutine", "plain"])
def test_an_asyncio_workers_handler_sees_and_forwards_the_baggage(
    exporter: InMemorySpanExporter, kind: str
) -> None:
    seen = Seen()
    headers: dict[str, str] = {}

    async def main() -> None:
        async with brokerkit.aio.connect(_url()) as broker:
            worker = brokerkit.aio.Worker(broker)
            loop = asyncio.get_running_loop()
            if kind == "coroutine":

                @worker.handler("a")
                async def forward(body: Any) -> None:
                    seen.look()
                    await broker.publish("b", body)

            else:  # in the worker's pool thread

                @worker.handler("a")
                def forward_in_thread(body: Any) -> None:
                    seen.look()
                    asyncio.run_coroutine_threadsafe(broker.publish("b", body), loop).result(10)

            token = _with_baggage()
            try:
                await broker.publish("a", 1)
            finally:
                context.detach(token)
            async with worker.running():
                await wait_until_async(lambda: _handled(exporter), "'a' handled, 'b' sent")
            async for delivery in broker.consume("b", timeout=0, limit=1):
                headers.update(delivery.headers)
                await delivery.ack()

    asyncio.run(main())
    wait_until(lambda: len(exporter.get_finished_spans()) == 4, "the four spans")
    _forwarded(exporter, headers, seen)


def test_current_context_of_a_received_delivery_holds_span_and_baggage(
    exporter: InMemorySpanExporter,
) -> None:
    from brokerkit.instrumentation.opentelemetry import current_context, current_span

    with brokerkit.connect(_url()) as broker:
        token = _with_baggage()
        try:
            broker.publish("a", 1)
        finally:
            context.detach(token)
        with broker.subscribe("a", group="g") as sub:
            delivery = sub.receive(0)
            assert delivery is not None
            attached = context.attach(current_context(delivery))
            try:
                assert baggage.get_baggage("tenant") == "acme"
                assert trace.get_current_span() is current_span(delivery)
            finally:
                context.detach(attached)
            delivery.ack()
            # settled: no span is open, and the context is the empty one
            assert current_context(delivery) == context.Context()
    assert baggage.get_baggage("tenant") is None
