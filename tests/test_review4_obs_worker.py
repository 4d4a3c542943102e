"""The worker under the message hooks: a handler runs with its delivery's span as the
current one (a publish from it continues the trace), and a delivery the worker cannot
settle (the server gone) still ends its hooks, sync and asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the opentelemetry extra")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import brokerkit
import brokerkit.aio
from brokerkit._hooks import HANDLER_CONTEXT
from tests.redis_server import RedisServer
from tests.spans import recorded_spans
from tests.waiting import wait_until


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exported:
        yield exported


class Ends:
    """Records every ``brokerkit_deliver_end``."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, str, str | None]] = []

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str, error: Any) -> None:
        self.ended.append((delivery.topic, outcome, type(error).__name__ if error else None))


@pytest.fixture
def ends() -> Iterator[Ends]:
    recorder = Ends()
    brokerkit.get_plugin_manager().register(recorder)
    try:
        yield recorder
    finally:
        brokerkit.get_plugin_manager().unregister(recorder)


def one_tree(exporter: InMemorySpanExporter, current: list[bool]) -> None:
    """``send a`` → ``process a`` → ``send b``, one trace, and the handler saw a span."""
    spans: dict[str, ReadableSpan] = {}
    wait_until(
        lambda: spans.update({s.name: s for s in exporter.get_finished_spans()}) or len(spans) == 3,
        "the three spans",
    )
    send_a, process_a, send_b = spans["send a"], spans["process a"], spans["send b"]
    assert current == [True]
    assert send_b.context.trace_id == send_a.context.trace_id
    assert send_b.parent is not None and send_b.parent.span_id == process_a.context.span_id
    # made current for the handler only: the slot's own context is left as it was
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_a_sync_handler_runs_under_its_process_span(exporter: InMemorySpanExporter) -> None:
    current: list[bool] = []
    with brokerkit.connect(f"memory://obs-worker-{uuid.uuid4().hex}") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("a")
        def forward(body: Any) -> None:
            current.append(trace.get_current_span().get_span_context().is_valid)
            broker.publish("b", body)

        broker.publish("a", 1)
        with worker.running():
            wait_until(
                lambda: broker.inspect("b").length == 1 and broker.inspect("a").in_flight == 0,
                "'a' handled and forwarded to 'b'",
            )
    one_tree(exporter, current)


@pytest.mark.parametrize("kind", ["coroutine", "plain"])
def test_an_asyncio_handler_runs_under_its_process_span(
    exporter: InMemorySpanExporter, kind: str
) -> None:
    current: list[bool] = []

    async def main() -> None:
        async with brokerkit.aio.connect(f"memory://obs-worker-{uuid.uuid4().hex}") as broker:
            worker = brokerkit.aio.Worker(broker)
            loop = asyncio.get_running_loop()
            if kind == "coroutine":

                @worker.handler("a")
                async def forward(body: Any) -> None:
                    current.append(trace.get_current_span().get_span_context().is_valid)
                    await broker.publish("b", body)

            else:  # in the worker's pool thread

                @worker.handler("a")
                def forward_in_thread(body: Any) -> None:
                    current.append(trace.get_current_span().get_span_context().is_valid)
                    asyncio.run_coroutine_threadsafe(broker.publish("b", body), loop).result(10)

            await broker.publish("a", 1)
            async with worker.running():
                deadline = time.monotonic() + 20
                while (await broker.inspect("b")).length < 1 or (
                    await broker.inspect("a")
                ).in_flight:
                    assert time.monotonic() < deadline, "timed out waiting"
                    await asyncio.sleep(0.02)  # polling with a deadline
            assert trace.get_current_span() is trace.INVALID_SPAN

    asyncio.run(main())
    one_tree(exporter, current)


def _url(server: RedisServer, scheme: str) -> str:
    return f"{server.url(scheme)}?prefix=obs-{uuid.uuid4().hex[:12]}&reconnect_timeout=0.3"


#: Whether the handler raises: then its nack fails (and the hand-back after it), and
#: the hooks end at that settlement "unsettled", with the handler's error, as
#: ``brokerkit_deliver_end`` promises (not "nack" before the nack ran); else its ack
#: fails, and they end "unsettled" with the settlement's error.
RAISES = pytest.mark.parametrize(
    ("raises", "error"), [(False, "ConnectionFailed"), (True, "RuntimeError")]
)


@RAISES
@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_a_sync_handler_whose_settlement_fails_still_ends_its_delivery_hooks(
    redis_server: RedisServer, ends: Ends, scheme: str, raises: bool, error: str
) -> None:
    handled, go_on = threading.Event(), threading.Event()
    broker = brokerkit.connect(_url(redis_server, scheme))
    try:
        worker = brokerkit.Worker(broker)

        @worker.handler("jobs")
        def job(body: Any) -> None:
            handled.set()
            go_on.wait(20)
            if raises:
                raise RuntimeError("handler failed")

        broker.publish("jobs", 1)
        with worker.running():
            assert handled.wait(20)
            redis_server.kill()
            go_on.set()
            wait_until(lambda: bool(ends.ended), "the delivery's end")
    finally:
        broker.close()
    assert ends.ended == [("jobs", "unsettled", error)]


@RAISES
@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_an_asyncio_handler_whose_settlement_fails_still_ends_its_delivery_hooks(
    redis_server: RedisServer, ends: Ends, scheme: str, raises: bool, error: str
) -> None:
    async def main() -> None:
        handled, go_on = asyncio.Event(), asyncio.Event()
        broker = await brokerkit.aio.connect(_url(redis_server, scheme))
        try:
            worker = brokerkit.aio.Worker(broker)

            @worker.handler("jobs")
            async def job(body: Any) -> None:
                handled.set()
                await go_on.wait()
                if raises:
                    raise RuntimeError("handler failed")

            await broker.publish("jobs", 1)
            async with worker.running():
                await asyncio.wait_for(handled.wait(), 20)
                redis_server.kill()
                go_on.set()
                deadline = time.monotonic() + 20
                while not ends.ended:
                    assert time.monotonic() < deadline, "timed out waiting"
                    await asyncio.sleep(0.02)  # polling with a deadline
        finally:
            await broker.close()

    asyncio.run(main())
    assert ends.ended == [("jobs", "unsettled", error)]


class BrokenContexts:
    """Lists a context that fails to enter and one that fails to leave."""

    def __init__(self) -> None:
        self.left: list[str | None] = []

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any, scope: dict[str, Any]) -> None:
        @contextlib.contextmanager
        def failing_to_leave() -> Iterator[None]:
            try:
                yield
            except BaseException as exc:
                self.left.append(type(exc).__name__)
                raise ValueError("leaving failed") from exc
            self.left.append(None)
            raise ValueError("leaving failed")

        def failing_to_enter() -> Any:
            raise ValueError("entering failed")

        scope.setdefault(HANDLER_CONTEXT, []).extend([failing_to_enter, failing_to_leave])


@pytest.mark.parametrize("fails", [False, True])
def test_a_handler_context_that_fails_changes_nothing_the_handler_does(fails: bool) -> None:
    plugin = BrokenContexts()
    brokerkit.get_plugin_manager().register(plugin)
    attempts: list[int] = []
    try:
        with brokerkit.connect(f"memory://obs-worker-{uuid.uuid4().hex}") as broker:
            worker = brokerkit.Worker(broker)

            @worker.handler("a", retry=brokerkit.worker.Fixed(0))
            def job(delivery: brokerkit.Delivery) -> None:
                attempts.append(delivery.attempt)
                if fails and delivery.attempt == 1:
                    raise RuntimeError("handler failed")

            broker.publish("a", 1)
            with worker.running():
                wait_until(
                    lambda: len(attempts) == 1 + fails and broker.inspect("a").in_flight == 0,
                    f"{1 + fails} attempts, the last one settled",
                )
                info = broker.inspect("a")
    finally:
        brokerkit.get_plugin_manager().unregister(plugin)
    assert attempts == [1, 2][: 1 + fails]  # failed: retried, as without the plugin
    assert info.dead_lettered == 0 and info.groups[0].lag == 0
    assert plugin.left == (["RuntimeError", None] if fails else [None])


@pytest.mark.parametrize("limit", [None, 1])
def test_a_failed_handler_ends_its_hooks_at_the_nack_with_its_error(
    ends: Ends, limit: int | None
) -> None:
    """A nack that works: "nack" (a retry) or "dead-letter" (at the limit), with the
    handler's error."""
    attempts: list[int] = []
    options = "" if limit is None else f"?max_deliveries={limit}"
    with brokerkit.connect(f"memory://obs-worker-{uuid.uuid4().hex}{options}") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("jobs", retry=brokerkit.worker.Fixed(0))
        def job(delivery: brokerkit.Delivery) -> None:
            attempts.append(delivery.attempt)
            if delivery.attempt == 1:
                raise RuntimeError("handler failed")

        broker.publish("jobs", 1)
        with worker.running():
            wait_until(lambda: len(ends.ended) == (1 if limit else 2), "the deliveries' ends")
    first = ("jobs", "dead-letter" if limit else "nack", "RuntimeError")
    assert ends.ended == ([first] if limit else [first, ("jobs", "ack", None)])
