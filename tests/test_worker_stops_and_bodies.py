"""The worker at its edges: a typed body
whose type raises something unexpected is dead-lettered at once (and an unexpected
error is never taken for a cancellation); an InitVar is a field of a dataclass body;
the asyncio worker's stop() from a handler thread; a handler thread left running by
a drain keeps its lease while it runs and has its result dropped when it ends; a drain
stops every handler fetching before it closes any subscription; `--concurrency` moves
a default prefetch along; `brokerkit worker` without a broker is a usage error."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pydantic
import pytest

import brokerkit
import brokerkit.aio
from brokerkit.cli._app import run
from brokerkit.cli._url import URL_ENV
from tests.test_worker import DEADLINE
from tests.waiting import wait_until

#: The visibility timeout of the lease tests: a lease nobody renews runs out twice
#: within the wait that proves none did, and a renewal made late by a loaded machine
#: still comes in time.
VISIBILITY = 2.0


def only_dead_letter(broker: brokerkit.Broker, topic: str) -> brokerkit.Delivery:
    wait_until(lambda: broker.inspect(topic).dead_lettered == 1, "the dead letter", within=DEADLINE)
    (delivery,) = broker.consume(broker.dead_letter_topic(topic), timeout=0)
    return delivery


# -- 1. a body whose type raises what no validation expects ----------------------------


@dataclasses.dataclass
class AssertingOrder:
    order_id: int

    def __post_init__(self) -> None:
        assert self.order_id > 0, "order_id must be positive"


class LookingUpOrder(pydantic.BaseModel):
    order_id: int

    @pydantic.field_validator("order_id")
    @classmethod
    def known(cls, value: int) -> int:
        if value < 0:
            raise LookupError("no such order")  # pydantic lets this through, unwrapped
        return value


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (AssertingOrder, "invalid body: AssertingOrder: AssertionError: order_id must be positive"),
        (LookingUpOrder, "invalid body: LookingUpOrder: LookupError: no such order"),
    ],
)
def test_a_body_whose_type_raises_an_unexpected_error_is_dead_lettered_at_once(
    model: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the error escaped as if the slot were cancelled, the delivery was handed
    back uncounted and taken again for ever ("a slot failed and starts over")."""
    with brokerkit.connect("memory://", max_deliveries=3) as broker:
        worker = brokerkit.Worker(broker)
        called: list[Any] = []

        def ship(order: Any) -> None:
            called.append(order)

        ship.__annotations__["order"] = model  # as `order: AssertingOrder` would
        worker.handler("orders")(ship)
        broker.publish("orders", {"order_id": -1})
        with worker.running():
            dead = only_dead_letter(broker, "orders")
        # (pytest's assertion rewriting adds to an assert's message: a prefix, then)
        assert dead.headers["x-dead-letter-reason"].startswith(reason)
        assert dead.headers["x-deliveries"] == "1"  # never retried
        assert called == []
        (stats,) = worker.stats()
        assert (stats.dead_lettered, stats.retried, stats.failed) == (1, 0, 0)
        assert "a slot failed" not in caplog.text


def test_an_unexpected_error_of_the_worker_counts_attempts_and_is_no_cancellation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker's ack raising a RuntimeError (a bug, not a BrokerError) every time:
    each delivery counts an attempt and the message is dead-lettered at the limit with
    that error as the reason, not as "cancelled by a hard stop"."""
    with brokerkit.connect("memory://", max_deliveries=2) as broker:

        def failing_ack(deliveries: Any) -> None:
            raise RuntimeError("a bug in acking")

        monkeypatch.setattr(broker, "_ack", failing_ack)
        worker = brokerkit.Worker(broker)
        attempts: list[int] = []

        @worker.handler("t")
        def job(delivery: brokerkit.Delivery) -> None:
            attempts.append(delivery.attempt)

        broker.publish("t", 1)
        with worker.running():
            dead = only_dead_letter(broker, "t")
        assert attempts == [1, 2]
        assert dead.headers["x-dead-letter-reason"] == "worker error: RuntimeError: a bug in acking"
        assert "a slot failed and starts over" in caplog.text


# -- 2. InitVar ---------------------------------------------------------------------


@dataclasses.dataclass
class Price:
    cents: int
    currency: dataclasses.InitVar[str]
    rounding: dataclasses.InitVar[int] = 1

    def __post_init__(self, currency: str, rounding: int) -> None:
        self.label = f"{self.cents - self.cents % rounding} {currency}"


def test_a_dataclass_body_takes_its_init_vars_and_requires_those_without_default() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        labels: list[str] = []

        @worker.handler("prices")
        def show(price: Price) -> None:
            labels.append(price.label)

        broker.publish("prices", {"cents": 105, "currency": "EUR"})
        broker.publish("prices", {"cents": 105, "currency": "EUR", "rounding": 10})
        broker.publish("prices", {"cents": 105})
        with worker.running():
            wait_until(lambda: len(labels) == 2, "two labels", within=DEADLINE)
            dead = only_dead_letter(broker, "prices")
        assert labels == ["105 EUR", "100 EUR"]
        reason = dead.headers["x-dead-letter-reason"]
        assert reason == "invalid body: Price: missing field(s) currency"


# -- 3. the asyncio worker's stop() from a handler thread --------------------------------


def test_the_asyncio_workers_stop_may_be_called_from_a_plain_handlers_thread() -> None:
    """In asyncio's debug mode, setting an asyncio.Event off its loop raises; before,
    the handler failed and the worker never drained."""
    raised: list[BaseException] = []

    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker, grace=DEADLINE)

            @worker.handler("jobs")
            def plain(body: dict[str, int]) -> None:
                try:
                    worker.stop()
                except BaseException as exc:
                    raised.append(exc)
                    raise

            task = asyncio.create_task(worker.run())
            assert await worker.wait_ready(DEADLINE)
            await broker.publish("jobs", {"n": 1})
            await asyncio.wait_for(task, DEADLINE)
            assert worker.drained
            (stats,) = worker.stats()
            assert (stats.processed, stats.failed) == (1, 0)

    asyncio.run(main(), debug=True)
    assert raised == []


# -- 4 and 5. a handler thread a drain left running ----------------------------------------


def test_a_sync_handler_thread_left_running_keeps_its_lease_and_its_result_is_dropped() -> None:
    """Before: nothing renewed its lease once run() returned, so another consumer got
    the message while the thread still ran; and the thread acked it when it ended."""
    gate, ended = threading.Event(), threading.Event()
    with brokerkit.connect("memory://", visibility_timeout=VISIBILITY) as broker:
        worker = brokerkit.Worker(broker, grace=0.1)

        @worker.handler("jobs")
        def slow(body: int) -> None:
            gate.wait(DEADLINE)
            ended.set()

        broker.publish("jobs", 1)
        try:
            with worker.running():
                wait_until(
                    lambda: worker.stats()[0].in_flight == 1,
                    "the delivery in flight",
                    within=DEADLINE,
                )
            assert not worker.drained
            other = broker.subscribe("jobs")
            # two visibility timeouts: the worker still renews the lease
            assert other.receive(timeout=2 * VISIBILITY) is None
        finally:
            gate.set()
        assert ended.wait(DEADLINE)
        wait_until(
            lambda: worker.stats()[0].in_flight == 0, "no delivery in flight", within=DEADLINE
        )
        again = other.receive(timeout=DEADLINE)  # once its lease runs out
        assert again is not None
        assert (again.body, again.attempt) == (1, 2)
        again.ack()
        assert worker.stats()[0].processed == 0


def test_an_asyncio_workers_handler_thread_left_running_keeps_its_lease() -> None:
    gate = threading.Event()

    async def main() -> None:
        async with brokerkit.aio.connect("memory://", visibility_timeout=VISIBILITY) as broker:
            worker = brokerkit.aio.Worker(broker, grace=0.1)

            @worker.handler("jobs")
            def slow(body: int) -> None:
                gate.wait(DEADLINE)

            await broker.publish("jobs", 1)
            async with worker.running():
                deadline = time.monotonic() + DEADLINE
                while worker.stats()[0].in_flight == 0:
                    assert time.monotonic() < deadline, "the handler never started"
                    await asyncio.sleep(0.01)
            assert not worker.drained
            other = await broker.subscribe("jobs")
            assert await other.receive(timeout=2 * VISIBILITY) is None
            gate.set()
            again = await other.receive(timeout=DEADLINE)  # once its lease runs out
            assert again is not None
            assert (again.body, again.attempt) == (1, 2)
            await again.ack()
            assert worker.stats()[0].processed == 0

    try:
        asyncio.run(main())
    finally:
        gate.set()


# -- 6. the drain's first step ------------------------------------------------------------


def test_a_drain_stops_every_handler_fetching_before_closing_any_subscription(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the first handler's subscription closes (held open here until the second
    handler's call in progress has ended), the second handler starts nothing more.
    Before, it was told to stop fetching only after that close, and went on."""
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker, grace=DEADLINE)
        gate, first_ended, second_started = threading.Event(), threading.Event(), threading.Event()
        started: list[int] = []
        started_during_close: list[bool] = []

        subscribe = broker.subscribe

        def subscribe_holding_a_close(topic: str, **options: Any) -> brokerkit.Subscription:
            subscription = subscribe(topic, **options)
            if topic == "idle":
                close = subscription.close

                def held_close() -> None:
                    gate.set()  # the busy handler's call in progress ends now
                    assert first_ended.wait(DEADLINE)
                    # a start after the stop would come within milliseconds
                    started_during_close.append(second_started.wait(1.0))
                    close()

                monkeypatch.setattr(subscription, "close", held_close)
            return subscription

        monkeypatch.setattr(broker, "subscribe", subscribe_holding_a_close)
        worker.handler("idle")(lambda body: None)

        @worker.handler("busy", prefetch=0)
        def busy(body: int) -> None:
            started.append(body)
            if len(started) == 1:
                gate.wait(DEADLINE)
                first_ended.set()
            else:
                second_started.set()

        broker.publish_many("busy", list(range(20)))
        with worker.running():
            wait_until(lambda: len(started) == 1, "the first busy call", within=DEADLINE)
        assert started_during_close == [False]
        assert started == [0]
        assert worker.drained
        assert sorted(d.body for d in broker.consume("busy", timeout=0)) == list(range(1, 20))


# -- 7. the command -----------------------------------------------------------------------


def test_concurrency_set_later_moves_a_default_prefetch_along() -> None:
    worker = brokerkit.Worker()
    worker.handler("a", name="a")(lambda body: None)  # prefetch: its default, concurrency
    worker.handler("b", name="b", concurrency=2, prefetch=5)(lambda body: None)
    worker.set_concurrency(16)
    assert [(s.concurrency, s.prefetch) for s in worker.handlers] == [(16, 16), (16, 5)]


def test_the_command_refuses_a_worker_without_a_broker_as_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(URL_ENV, raising=False)
    (tmp_path / "brokerless_app.py").write_text(
        textwrap.dedent(
            """
            import brokerkit

            worker = brokerkit.Worker()

            @worker.handler("t")
            def handle(body):
                pass
            """
        )
    )
    try:
        assert run(["worker", "brokerless_app:worker"]) == 2
    finally:
        sys.modules.pop("brokerless_app", None)
    stderr = capsys.readouterr().err
    assert "has no broker of its own" in stderr
    assert URL_ENV in stderr
    assert "processed=" not in stderr  # no status line for a worker that never ran
