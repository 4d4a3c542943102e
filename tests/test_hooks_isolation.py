"""The message hooks' promises to plugins: one plugin's failing hook is logged and every
other plugin's hook still runs; a lost lease is reported once per delivery."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from tests.conftest import RedisTarget


class Broken:
    """A plugin whose every message hook raises."""

    @brokerkit.hookimpl
    def brokerkit_publish_start(self, headers: dict[str, str]) -> None:
        raise RuntimeError("broken publish_start")

    @brokerkit.hookimpl
    def brokerkit_publish_end(self, messages: Any) -> None:
        raise RuntimeError("broken publish_end")

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any) -> None:
        raise RuntimeError("broken deliver_start")

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str) -> None:
        raise RuntimeError("broken deliver_end")

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        raise RuntimeError("broken on_ack")

    @brokerkit.hookimpl
    def brokerkit_on_nack(self, deliveries: Any, requeue: bool) -> None:
        raise RuntimeError("broken on_nack")

    @brokerkit.hookimpl
    def brokerkit_on_dead_letter(self, deliveries: Any, reason: str) -> None:
        raise RuntimeError("broken on_dead_letter")


class Recorder:
    """A plugin that writes down the message hooks it is called with."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @brokerkit.hookimpl
    def brokerkit_publish_start(self, headers: dict[str, str]) -> None:
        headers["x-recorded"] = "yes"
        self.calls.append("publish_start")

    @brokerkit.hookimpl
    def brokerkit_publish_end(self, error: BaseException | None) -> None:
        self.calls.append("publish_end")

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any) -> None:
        self.calls.append("deliver_start")

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, outcome: str) -> None:
        self.calls.append(f"deliver_end:{outcome}")

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        self.calls.append("ack")

    @brokerkit.hookimpl
    def brokerkit_on_nack(self, deliveries: Any, requeue: bool) -> None:
        self.calls.append(f"nack:{requeue}")

    @brokerkit.hookimpl
    def brokerkit_on_dead_letter(self, reason: str) -> None:
        self.calls.append(f"dead_letter:{reason}")


EXPECTED = [
    "publish_start",
    "publish_end",
    "deliver_start",
    "ack",
    "deliver_end:ack",
    "publish_start",
    "publish_end",
    "deliver_start",
    "nack:False",
    "dead_letter:rejected",
    "deliver_end:dead-letter",
]


@pytest.fixture
def plugins() -> Iterator[list[object]]:
    """Plugins to register for one test, unregistered after it."""
    registered: list[object] = []
    yield registered
    manager = brokerkit.get_plugin_manager()
    for plugin in registered:
        manager.unregister(plugin)


def register(plugins: list[object], plugin: object) -> None:
    brokerkit.get_plugin_manager().register(plugin)
    plugins.append(plugin)


def _url() -> str:
    return f"memory://isolation-{uuid.uuid4().hex}"


@pytest.mark.parametrize("broken_first", [True, False], ids=["broken-later", "broken-earlier"])
def test_a_broken_plugin_does_not_stop_the_others_sync(
    plugins: list[object], broken_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # pluggy calls the later-registered plugin first: both orders are checked.
    recorder = Recorder()
    for plugin in (Broken(), recorder) if broken_first else (recorder, Broken()):
        register(plugins, plugin)
    with (
        caplog.at_level(logging.ERROR, "brokerkit.hooks"),
        brokerkit.connect(_url()) as broker,
        broker.subscribe("t") as sub,
    ):
        broker.publish("t", "one")
        first = sub.receive(0)
        assert first is not None and first.headers["x-recorded"] == "yes"
        first.ack()
        broker.publish("t", "two")
        second = sub.receive(0)
        assert second is not None
        second.nack(requeue=False)
    assert recorder.calls == EXPECTED
    failed = [r for r in caplog.records if r.name == "brokerkit.hooks"]
    assert len(failed) == len(EXPECTED)
    assert all("the other plugins and the message flow go on" in r.getMessage() for r in failed)


def test_a_broken_plugin_does_not_stop_the_others_async(plugins: list[object]) -> None:
    recorder = Recorder()
    register(plugins, recorder)
    register(plugins, Broken())

    async def main() -> None:
        async with (
            brokerkit.aio.connect(_url()) as broker,
            await broker.subscribe("t") as sub,
        ):
            await broker.publish("t", "one")
            first = await sub.receive(0)
            assert first is not None and first.headers["x-recorded"] == "yes"
            await first.ack()
            await broker.publish("t", "two")
            second = await sub.receive(0)
            assert second is not None
            await second.nack(requeue=False)

    asyncio.run(main())
    assert recorder.calls == EXPECTED


def test_a_broken_plugin_leaves_opentelemetry_and_prometheus_whole(
    plugins: list[object],
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import CollectorRegistry

    from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor
    from brokerkit.instrumentation.prometheus import BrokerkitMetrics

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    BrokerkitInstrumentor().instrument(tracer_provider=provider)
    registry = CollectorRegistry()
    metrics = BrokerkitMetrics(registry).install()
    try:
        register(plugins, Broken())  # registered last: pluggy would have called it first
        with brokerkit.connect(_url()) as broker, broker.subscribe("orders") as sub:
            broker.publish("orders", 1)
            delivery = sub.receive(0)
            assert delivery is not None
            assert "traceparent" in delivery.headers
            delivery.ack()
            group = sub.group
    finally:
        metrics.uninstall()
        BrokerkitInstrumentor().uninstrument()
    assert sorted(span.name for span in exporter.get_finished_spans()) == [
        "process orders",
        "send orders",
    ]
    labels = {"topic": "orders", "group": group}
    assert registry.get_sample_value("brokerkit_messages_acked_total", labels) == 1.0
    assert (
        registry.get_sample_value(
            "brokerkit_handler_duration_seconds_count", {**labels, "outcome": "ack"}
        )
        == 1.0
    )


class Ordered:
    """A plugin that writes its name down when ``brokerkit_on_ack`` is called."""

    def __init__(self, name: str, order: list[str]) -> None:
        self.name = name
        self.order = order

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        self.order.append(self.name)


class First(Ordered):
    @brokerkit.hookimpl(tryfirst=True)
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        self.order.append(self.name)


class Last(Ordered):
    @brokerkit.hookimpl(trylast=True)
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        raise RuntimeError(self.name)


class Wrapping(Ordered):
    @brokerkit.hookimpl(wrapper=True)
    def brokerkit_on_ack(self, deliveries: Any) -> Generator[None, None, None]:
        self.order.append(f"{self.name}:before")
        yield
        self.order.append(f"{self.name}:after")
        raise RuntimeError(self.name)


def test_implementations_run_in_pluggys_order_each_on_its_own(
    plugins: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    order: list[str] = []
    register(plugins, Last("last", order))
    register(plugins, First("first", order))
    register(plugins, Ordered("early", order))
    register(plugins, Wrapping("wrapper", order))
    register(plugins, Ordered("late", order))
    with (
        caplog.at_level(logging.ERROR, "brokerkit.hooks"),
        brokerkit.connect(_url()) as broker,
        broker.subscribe("t") as sub,
    ):
        broker.publish("t", "x")
        delivery = sub.receive(0)
        assert delivery is not None
        delivery.ack()
    # A wrapper goes first, as in pluggy, around no other plugin's implementation.
    assert order == ["wrapper:before", "wrapper:after", "first", "late", "early"]
    failed = sorted(str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    assert failed == ["last", "wrapper"]


class Later:
    """A plugin ready for an argument a later hookspec may add, given a default."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    @brokerkit.hookimpl
    def brokerkit_on_nack(self, deliveries: Any, requeue: bool = False) -> None:
        self.seen.append(requeue)


def test_an_argument_with_a_default_is_still_passed(plugins: list[object]) -> None:
    later = Later()
    register(plugins, later)
    with brokerkit.connect(_url()) as broker, broker.subscribe("t") as sub:
        broker.publish("t", "x")
        delivery = sub.receive(0)
        assert delivery is not None
        delivery.nack(requeue=True)
    assert later.seen == [True]


class LeaseWatch:
    """A plugin that writes down lost leases and the delivery hooks' starts and ends."""

    def __init__(self) -> None:
        self.lost: list[str] = []
        self.delivery: list[tuple[str, str]] = []

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any) -> None:
        self.delivery.append(("start", delivery.id))

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str) -> None:
        self.delivery.append((outcome, delivery.id))

    @brokerkit.hookimpl
    def brokerkit_on_lease_lost(self, deliveries: Any) -> None:
        self.lost.extend(d.id for d in deliveries)


def test_a_prefetched_deliverys_lost_lease_is_reported_once_sync(
    plugins: list[object],
    redis_broker: Any,
    redis_client: redis.Redis,
) -> None:
    watch = LeaseWatch()
    register(plugins, watch)
    broker = redis_broker("redis+stream")
    broker.publish_many("jobs", ["a", "b"])
    sub = broker.subscribe("jobs", group="g", prefetch=2)
    first = sub.receive(timeout=5)
    assert first is not None and sub.buffered == 1
    # The other one waits in the buffer, leased; another consumer claims it.
    key = broker.stream_key("jobs")
    pending = redis_client.xpending_range(key, "g", "-", "+", 10)
    taken = [p["message_id"] for p in pending if p["message_id"].decode() != first.receipt.entry_id]
    redis_client.xclaim(key, "g", "other", 0, taken, justid=True)
    # One round of the background renewal, run here: it finds the buffered lease gone.
    broker._suspend_renewals()
    broker._keeper._renew_held()
    assert len(watch.lost) == 1
    second = sub.receive(timeout=5)
    assert second is not None and watch.lost == [second.id]
    with pytest.raises(brokerkit.StaleDelivery):
        second.ack()
    first.ack()
    assert watch.lost == [second.id]  # not again when its ack was refused
    assert watch.delivery == [
        ("start", first.id),
        ("start", second.id),
        ("lease-lost", second.id),
        ("ack", first.id),
    ]


def test_a_prefetched_deliverys_lost_lease_is_reported_once_async(
    plugins: list[object], redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    watch = LeaseWatch()
    register(plugins, watch)

    async def main() -> None:
        url = redis_target.url("redis+stream")
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish_many("jobs", ["a", "b"])
            async with await broker.subscribe("jobs", group="g", prefetch=2) as sub:
                first = await sub.receive(timeout=5)
                assert first is not None
                key = broker.stream_key("jobs")
                pending = redis_client.xpending_range(key, "g", "-", "+", 10)
                taken = [
                    p["message_id"]
                    for p in pending
                    if p["message_id"].decode() != first.receipt.entry_id
                ]
                assert len(taken) == 1
                redis_client.xclaim(key, "g", "other", 0, taken, justid=True)
                await broker._suspend_renewals()
                await broker._keeper._renew_held()
                assert len(watch.lost) == 1
                second = await sub.receive(timeout=5)
                assert second is not None and watch.lost == [second.id]
                with pytest.raises(brokerkit.StaleDelivery):
                    await second.ack()
                await first.ack()
                assert watch.lost == [second.id]
                assert watch.delivery == [
                    ("start", first.id),
                    ("start", second.id),
                    ("lease-lost", second.id),
                    ("ack", first.id),
                ]

    asyncio.run(main())


class BadHeaders:
    """A plugin that sets one header the broker can send and two it cannot."""

    @brokerkit.hookimpl
    def brokerkit_publish_start(self, headers: dict[str, Any]) -> None:
        headers["x-count"] = 3  # not a str
        headers["x-dead-letter-reason"] = "mine"  # reserved for the broker
        headers["x-fine"] = "yes"


def test_a_header_a_plugin_cannot_send_is_left_out_not_blamed_on_the_caller(
    plugins: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    """Before, every publish failed with an InvalidMessage about a header the caller
    never passed, naming no plugin."""
    plugin = BadHeaders()
    register(plugins, plugin)
    name = brokerkit.get_plugin_manager().get_name(plugin)
    with brokerkit.connect(f"memory://hooks-{uuid.uuid4().hex}") as broker:
        broker.publish("t", 1, headers={"x-mine": "kept"})
        (delivery,) = broker.consume("t", timeout=0, limit=1)
        delivery.ack()
    assert dict(delivery.headers) == {"x-mine": "kept", "x-fine": "yes"}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all(f"plugin {name!r}" in e for e in errors)
    assert any("'x-count'" in e for e in errors)
