"""The message hooks: what each is told, sync and asyncio, and that no hook means no call."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit._hooks import RELAY
from tests.conftest import registered


class Recorder:
    """A plugin that writes down every message hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @brokerkit.hookimpl
    def brokerkit_publish_start(
        self, topic: str, headers: dict[str, str], count: int, scope: dict[str, Any]
    ) -> None:
        headers["x-added"] = "by-hook"
        scope["started"] = topic
        self.calls.append(("publish_start", (topic, count)))

    @brokerkit.hookimpl
    def brokerkit_publish_end(
        self, messages: Any, error: BaseException | None, scope: dict[str, Any]
    ) -> None:
        self.calls.append(("publish_end", (scope["started"], len(messages), type(error))))

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any, scope: dict[str, Any]) -> None:
        scope["id"] = delivery.id
        self.calls.append(("deliver_start", delivery.attempt))

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str, scope: dict[str, Any]) -> None:
        assert scope["id"] == delivery.id
        self.calls.append(("deliver_end", outcome))

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        self.calls.append(("ack", len(deliveries)))

    @brokerkit.hookimpl
    def brokerkit_on_nack(self, deliveries: Any, requeue: bool) -> None:
        self.calls.append(("nack", requeue))

    @brokerkit.hookimpl
    def brokerkit_on_dead_letter(self, deliveries: Any, reason: str) -> None:
        self.calls.append(("dead_letter", reason))

    @brokerkit.hookimpl
    def brokerkit_on_lease_lost(self, deliveries: Any) -> None:
        self.calls.append(("lease_lost", len(deliveries)))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    yield from registered(Recorder())


def _url() -> str:
    return f"memory://hooks-{uuid.uuid4().hex}"


# The path the issue names: publish -> consume -> nack -> redeliver -> ack -> dead letter.
EXPECTED = [
    ("publish_start", ("t", 1)),
    ("publish_end", ("t", 1, type(None))),
    ("deliver_start", 1),
    ("nack", True),
    ("deliver_end", "nack"),
    ("deliver_start", 2),
    ("ack", 1),
    ("deliver_end", "ack"),
    ("publish_start", ("t", 1)),
    ("publish_end", ("t", 1, type(None))),
    ("deliver_start", 1),
    ("nack", False),
    ("dead_letter", "rejected"),
    ("deliver_end", "dead-letter"),
]


def test_hooks_see_the_whole_path_sync(recorder: Recorder) -> None:
    with brokerkit.connect(_url()) as broker:
        broker.publish("t", "one")
        with broker.subscribe("t") as sub:
            first = sub.receive(0)
            assert first is not None and first.headers["x-added"] == "by-hook"
            first.nack()
            again = sub.receive(0)
            assert again is not None and again.attempt == 2
            again.ack()
            broker.publish("t", "two")
            last = sub.receive(0)
            assert last is not None
            last.nack(requeue=False)
    assert recorder.calls == EXPECTED


def test_hooks_see_the_whole_path_async(recorder: Recorder) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(_url()) as broker:
            await broker.publish("t", "one")
            async with await broker.subscribe("t") as sub:
                first = await sub.receive(0)
                assert first is not None and first.headers["x-added"] == "by-hook"
                await first.nack()
                again = await sub.receive(0)
                assert again is not None
                await again.ack()
                await broker.publish("t", "two")
                last = await sub.receive(0)
                assert last is not None
                await last.nack(requeue=False)

    asyncio.run(main())
    assert recorder.calls == EXPECTED


def test_max_deliveries_is_a_dead_letter(recorder: Recorder) -> None:
    with brokerkit.connect(_url(), max_deliveries=1) as broker:
        broker.publish("t", "x")
        for delivery in broker.consume("t", timeout=0):
            delivery.nack()
        assert broker.inspect("t").dead_lettered == 1
    assert ("dead_letter", "max_deliveries") in recorder.calls


def test_consume_ends_a_delivery_left_unsettled(recorder: Recorder) -> None:
    with brokerkit.connect(_url()) as broker:
        broker.publish_many("t", ["a", "b"])
        held = list(broker.consume("t", timeout=0))
        broker.ack(*held)
    ends = [outcome for name, outcome in recorder.calls if name == "deliver_end"]
    assert ends == ["unsettled", "unsettled"]
    assert ("ack", 2) in recorder.calls


def test_lease_loss_is_reported() -> None:
    plugin = Recorder()
    clock = brokerkit.ManualClock()
    brokerkit.get_plugin_manager().register(plugin)
    try:
        with brokerkit.connect(_url(), clock=clock, visibility_timeout=5) as broker:
            broker.publish("t", "x")
            with broker.subscribe("t") as sub:
                held = sub.receive(0)
                assert held is not None
                clock.advance(6)
                again = sub.receive(0)  # the lease ran out: delivered again
                assert again is not None and again.attempt == 2
                with pytest.raises(brokerkit.StaleDelivery):
                    held.ack()
                again.ack()
    finally:
        brokerkit.get_plugin_manager().unregister(plugin)
    assert ("lease_lost", 1) in plugin.calls
    assert ("deliver_end", "lease-lost") in plugin.calls


def test_one_lost_lease_is_reported_once(recorder: Recorder) -> None:
    clock = brokerkit.ManualClock()
    with brokerkit.connect(_url(), clock=clock, visibility_timeout=5) as broker:
        broker.publish("t", "x")
        with broker.subscribe("t") as sub:
            held = sub.receive(0)
            assert held is not None
            clock.advance(6)
            again = sub.receive(0)  # the lease ran out: delivered again
            assert again is not None
            with pytest.raises(brokerkit.StaleDelivery):
                held.extend(5)
            with pytest.raises(brokerkit.StaleDelivery):
                held.ack()  # the same lost lease, found again
            RELAY.lease_lost([held, held])  # as a lease keeper's renewal would
            again.ack()
    assert recorder.calls.count(("lease_lost", 1)) == 1
    assert "lease_lost" not in recorder.names()[recorder.names().index("lease_lost") + 1 :]
    assert recorder.calls.count(("deliver_end", "lease-lost")) == 1
    assert recorder.calls.count(("deliver_end", "ack")) == 1


def test_a_delivery_ends_once_when_threads_race_to_end_it(recorder: Recorder) -> None:
    with brokerkit.connect(_url()) as broker:
        broker.publish("t", "x")
        with broker.subscribe("t") as sub:
            delivery = sub.receive(0)
            assert delivery is not None
            start = threading.Barrier(8)

            def end() -> None:
                start.wait(5)
                RELAY.deliver_end(delivery, "nack")

            threads = [threading.Thread(target=end) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(5)
            delivery.ack()
    assert recorder.calls.count(("deliver_end", "nack")) == 1
    assert ("deliver_end", "ack") not in recorder.calls  # already ended


def test_a_failed_publish_reaches_the_end_hook(recorder: Recorder) -> None:
    with brokerkit.connect(_url()) as broker, pytest.raises(brokerkit.SerializationError):
        broker.publish("t", object())
    assert recorder.calls[-1] == ("publish_end", ("t", 0, brokerkit.SerializationError))


def test_a_failing_hook_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        @brokerkit.hookimpl
        def brokerkit_on_ack(self, deliveries: Any) -> None:
            raise RuntimeError("boom")

    plugin = Broken()
    brokerkit.get_plugin_manager().register(plugin)
    try:
        with brokerkit.connect(_url()) as broker, caplog.at_level(logging.ERROR, "brokerkit"):
            broker.publish("t", "x")
            for delivery in broker.consume("t", timeout=0):
                delivery.ack()
    finally:
        brokerkit.get_plugin_manager().unregister(plugin)
    assert "brokerkit_on_ack hook failed" in caplog.text
    assert caplog.records[0].name == "brokerkit.hooks"


def test_no_plugin_means_no_hook_call() -> None:
    manager = brokerkit.get_plugin_manager()
    calls: list[str] = []
    undo = manager.add_hookcall_monitoring(
        lambda name, impls, kwargs: calls.append(name), lambda *a: None
    )
    try:
        with brokerkit.connect(_url()) as broker:
            broker.publish("t", "x")
            for delivery in broker.consume("t", timeout=0):
                delivery.ack()
    finally:
        undo()
    assert not (RELAY.publish or RELAY.deliver or RELAY.settle)
    assert [name for name in calls if "register" not in name] == []


def test_a_nack_without_dead_letters_is_no_dead_letter(
    recorder: Recorder, redis_target: Any, prefix: str
) -> None:
    url = redis_target.url("redis+pubsub", prefix=prefix)
    with brokerkit.connect(url) as broker, broker.subscribe("t") as sub:
        broker.publish("t", "x")
        delivery = sub.receive(5)
        assert delivery is not None
        delivery.nack(requeue=False)  # pub/sub has no dead-letter topic
    assert ("deliver_end", "nack") in recorder.calls
    assert "dead_letter" not in recorder.names()


def test_the_callers_dead_letter_reason_reaches_the_hook(recorder: Recorder) -> None:
    with brokerkit.connect(_url()) as broker:
        broker.publish("t", "x")
        for delivery in broker.consume("t", timeout=0):
            delivery.nack(requeue=False, reason="no such customer")
    assert ("dead_letter", "no such customer") in recorder.calls
