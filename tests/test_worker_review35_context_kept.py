"""What docs/observability.md says of the context a worker's handler runs in (review
35): each slot's task, or handler thread, keeps one context across the handler calls it
makes, so a plain ``ContextVar.set`` of a handler is still set for the next handler it
runs; OpenTelemetry's current context does not carry over, even a handler's own
``context.attach`` left attached: the instrumentation's handler context detaches what it
attached as the handler ends (which resets what was attached over it too).

One slot, so that one task or thread runs every call: a sync worker's, an asyncio
worker's plain function (its pool of handler threads is one thread), and a coroutine
handler."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry import context
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import brokerkit
import brokerkit.aio
from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor
from tests.spans import instrument
from tests.waiting import wait_until, wait_until_async

#: Every wait of the tests is bounded by this; none is a sleep.
DEADLINE = 10.0
CALLS = 3

PLAIN: contextvars.ContextVar[int | None] = contextvars.ContextVar("review35", default=None)
OTEL_KEY = context.create_key("review35-kept")


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    instrument(InMemorySpanExporter())
    try:
        yield
    finally:
        BrokerkitInstrumentor().uninstrument()


def _recording(seen: list[tuple[Any, Any]]) -> Callable[[Any], None]:
    """What a handler does: note what the context holds, then set a value of each kind
    (neither undone)."""

    def handle(body: Any) -> None:
        seen.append((PLAIN.get(), context.get_value(OTEL_KEY)))
        PLAIN.set(body["n"])
        context.attach(context.set_value(OTEL_KEY, body["n"]))

    return handle


def _expected() -> list[tuple[Any, Any]]:
    return [(None if n == 0 else n - 1, None) for n in range(CALLS)]


def _url() -> str:
    return f"memory://review35-kept-{uuid.uuid4().hex}"


def test_a_sync_workers_slot_thread_keeps_its_context() -> None:
    seen: list[tuple[Any, Any]] = []
    with brokerkit.connect(_url()) as broker:
        worker = brokerkit.Worker(broker, grace=0)
        worker.handler("jobs", concurrency=1, name="kept")(_recording(seen))
        with worker.running(timeout=DEADLINE):
            for n in range(CALLS):
                broker.publish("jobs", {"n": n})
            wait_until(lambda: len(seen) == CALLS, "every call", DEADLINE)
    assert seen == _expected()


@pytest.mark.parametrize("kind", ["plain function", "coroutine"])
def test_an_asyncio_workers_handler_thread_or_slot_task_keeps_its_context(kind: str) -> None:
    seen: list[tuple[Any, Any]] = []
    record = _recording(seen)

    async def coroutine(body: Any) -> None:
        record(body)

    async def main() -> None:
        async with brokerkit.aio.connect(_url()) as broker:
            worker = brokerkit.aio.Worker(broker, grace=0)
            function = record if kind == "plain function" else coroutine
            worker.handler("jobs", concurrency=1, name="kept")(function)
            async with worker.running(timeout=DEADLINE):
                for n in range(CALLS):
                    await broker.publish("jobs", {"n": n})
                await wait_until_async(lambda: len(seen) == CALLS, "every call", DEADLINE)

    asyncio.run(asyncio.wait_for(main(), DEADLINE * 2))
    assert seen == _expected()
