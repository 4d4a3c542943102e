"""brokerkit.Worker and brokerkit.aio.Worker on the memory broker: settlement, retries
with the broker's delays, dead letters with reasons, typed bodies, bounded concurrency
and prefetch, lease renewal, stopping. The Redis and command-line tests are in
test_worker_redis.py."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import subprocess
import sys
import threading
import time
from typing import Any

import msgspec
import pydantic
import pytest

import brokerkit
import brokerkit.aio
from brokerkit.worker import Exponential, Fixed, Immediate, RetryPolicy
from tests.waiting import wait_until

#: Every wait in these tests polls with this deadline; none is a sleep.
DEADLINE = 10.0


def dead_letters(broker: brokerkit.Broker, topic: str) -> list[brokerkit.Delivery]:
    found = list(broker.consume(broker.dead_letter_topic(topic), timeout=0))
    for delivery in found:
        delivery.ack()
    return found


# -- settlement and retries ----------------------------------------------------------


def test_a_handler_that_returns_acks_and_one_that_raises_is_retried() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        calls: list[tuple[int, int]] = []

        @worker.handler("jobs")
        def job(body: dict[str, int], delivery: brokerkit.Delivery) -> None:
            calls.append((body["n"], delivery.attempt))
            if body["n"] == 2 and delivery.attempt == 1:
                raise RuntimeError("flaky")

        broker.publish_many("jobs", [{"n": 1}, {"n": 2}])
        with worker.running():
            wait_until(lambda: len(calls) == 3, "three handler calls", within=DEADLINE)
            wait_until(
                lambda: broker.inspect("jobs").in_flight == 0,
                "every 'jobs' delivery to be settled",
                within=DEADLINE,
            )
        assert sorted(calls) == [(1, 1), (2, 1), (2, 2)]
        (stats,) = worker.stats()
        assert (stats.processed, stats.failed, stats.retried, stats.dead_lettered) == (2, 1, 1, 0)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_failing_twice_then_succeeding_waits_the_policy_delays(flavour: str) -> None:
    """Three deliveries, the second 1 s and the third 2 s after the failure before.

    Measured from the moment the handler raises (before the worker nacks) to the
    moment the next delivery's handler starts: never shorter than the delay (the
    broker holds the message until it is due) and within 10 % above it. The memory
    broker wakes a waiting fetch at the due time (measured: under 5 ms late on an idle
    machine); 10 % of whole seconds (100 and 200 ms) leaves room for the nack, the
    fetch and thread switches on a loaded 2-core machine, where half-second delays
    were once 50 ms late.
    """
    policy = Exponential(1.0, factor=2, jitter=0, cap=10)
    marks: list[tuple[int, float, float]] = []  # attempt, started, raised

    def body_of_handler(delivery: Any) -> None:
        started = time.monotonic()
        if delivery.attempt < 3:
            marks.append((delivery.attempt, started, time.monotonic()))
            raise ConnectionError(f"gateway timeout #{delivery.attempt}")
        marks.append((delivery.attempt, started, started))

    if flavour == "sync":
        with brokerkit.connect("memory://") as broker:
            worker = brokerkit.Worker(broker)
            worker.handler("sms", retry=policy)(body_of_handler)
            broker.publish("sms", {"to": "+33"})
            with worker.running():
                wait_until(lambda: len(marks) == 3, "three attempts", within=DEADLINE)
    else:

        async def main() -> None:
            async with brokerkit.aio.connect("memory://") as broker:
                worker = brokerkit.aio.Worker(broker)

                @worker.handler("sms", retry=policy)
                async def sms(delivery: brokerkit.aio.AsyncDelivery) -> None:
                    body_of_handler(delivery)

                await broker.publish("sms", {"to": "+33"})
                async with worker.running():
                    while len(marks) < 3:
                        await asyncio.sleep(0.01)

        asyncio.run(main())
    assert [m[0] for m in marks] == [1, 2, 3]
    for (attempt, _, raised), (_, started, _) in itertools.pairwise(marks):
        expected = policy.delay(attempt)
        gap = started - raised
        assert expected <= gap <= expected * 1.1, (attempt, expected, gap)


def test_always_failing_is_dead_lettered_after_max_deliveries_with_its_last_error() -> None:
    with brokerkit.connect("memory://", max_deliveries=3) as broker:
        worker = brokerkit.Worker(broker)
        attempts: list[int] = []

        @worker.handler("pay", retry=Fixed(0.01))
        def pay(delivery: brokerkit.Delivery) -> None:
            attempts.append(delivery.attempt)
            raise ValueError(f"card declined on attempt {delivery.attempt}")

        broker.publish("pay", {"order": 7})
        with worker.running():
            wait_until(
                lambda: broker.inspect("pay").dead_lettered == 1,
                "the 'pay' message to be dead-lettered",
                within=DEADLINE,
            )
        assert attempts == [1, 2, 3]
        (dead,) = dead_letters(broker, "pay")
        assert dead.body == {"order": 7}
        assert dead.headers["x-dead-letter-reason"] == "ValueError: card declined on attempt 3"
        assert dead.headers["x-deliveries"] == "3"
        (stats,) = worker.stats()
        assert (stats.failed, stats.retried, stats.dead_lettered) == (3, 2, 1)


def test_the_policy_max_attempts_wins_when_smaller_than_max_deliveries() -> None:
    with brokerkit.connect("memory://", max_deliveries=10) as broker:
        worker = brokerkit.Worker(broker)
        attempts: list[int] = []

        @worker.handler("pay", retry=Immediate(max_attempts=2))
        def pay(delivery: brokerkit.Delivery) -> None:
            attempts.append(delivery.attempt)
            raise KeyError("nope")

        broker.publish("pay", "x")
        with worker.running():
            wait_until(
                lambda: broker.inspect("pay").dead_lettered == 1,
                "the 'pay' message to be dead-lettered",
                within=DEADLINE,
            )
        assert attempts == [1, 2]
        (dead,) = dead_letters(broker, "pay")
        assert dead.headers["x-dead-letter-reason"] == "KeyError: 'nope'"


def test_a_handler_may_settle_its_delivery_itself() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("jobs")
        def job(delivery: brokerkit.Delivery) -> None:
            delivery.nack(requeue=False, reason="not for us")

        broker.publish("jobs", "x")
        with worker.running():
            wait_until(
                lambda: broker.inspect("jobs").dead_lettered == 1,
                "the 'jobs' message to be dead-lettered",
                within=DEADLINE,
            )
        (dead,) = dead_letters(broker, "jobs")
        assert dead.headers["x-dead-letter-reason"] == "not for us"
        assert worker.stats()[0].processed == 1


# -- typed bodies -----------------------------------------------------------------------


class PydanticOrder(pydantic.BaseModel):
    order_id: int
    amount: float


class MsgspecOrder(msgspec.Struct):
    order_id: int
    amount: float


@dataclasses.dataclass(frozen=True)
class DataclassOrder:
    order_id: int
    amount: float


@pytest.mark.parametrize("model", [PydanticOrder, MsgspecOrder, DataclassOrder])
def test_a_typed_body_is_validated_and_an_invalid_one_dead_lettered_at_once(model: Any) -> None:
    with brokerkit.connect("memory://", max_deliveries=5) as broker:
        worker = brokerkit.Worker(broker)
        got: list[Any] = []

        def handle(order: Any) -> None:
            got.append(order)

        handle.__annotations__["order"] = model  # as `order: PydanticOrder` would

        worker.handler("orders", retry=Fixed(0.01))(handle)
        # publish accepts the typed object itself
        broker.publish("orders", model(order_id=1, amount=9.5))
        broker.publish("orders", {"order_id": 2})  # no amount: invalid for every model
        with worker.running():
            wait_until(
                lambda: len(got) == 1 and broker.inspect("orders").dead_lettered == 1,
                "the valid order to be handled and the invalid one dead-lettered",
                within=DEADLINE,
            )
        assert got == [model(order_id=1, amount=9.5)]
        (dead,) = dead_letters(broker, "orders")
        assert dead.body == {"order_id": 2}
        assert dead.headers["x-deliveries"] == "1"  # never retried
        reason = dead.headers["x-dead-letter-reason"]
        assert reason.startswith(f"invalid body: {model.__name__}:")
        assert "amount" in reason
        assert worker.stats()[0].dead_lettered == 1


def test_an_undecodable_body_is_dead_lettered_at_once() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("orders")(lambda body: None)
        broker.publish("orders", b"\xff\xfe", content_type="text/plain; charset=utf-8")
        with worker.running():
            wait_until(
                lambda: broker.inspect("orders").dead_lettered == 1,
                "the 'orders' message to be dead-lettered",
                within=DEADLINE,
            )
        (dead,) = dead_letters(broker, "orders")
        assert dead.headers["x-dead-letter-reason"].startswith("invalid body: a text/plain")


# -- concurrency, prefetch, leases ------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async-coroutine", "async-thread"])
def test_concurrency_is_real_and_bounded(kind: str) -> None:
    """Counters, not timing: the handlers hold until three run at once (so the bound is
    reached), and no count ever goes above three."""
    lock = threading.Lock()
    state = {"now": 0, "peak": 0, "done": 0}
    reached = threading.Event()

    def enter() -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            if state["now"] == 3:
                reached.set()

    def leave() -> None:
        with lock:
            state["now"] -= 1
            state["done"] += 1

    def sync_handler(body: int) -> None:
        enter()
        reached.wait(DEADLINE)
        leave()

    async def async_handler(body: int) -> None:
        enter()
        while not reached.is_set():
            await asyncio.sleep(0.005)
        leave()

    if kind == "sync":
        with brokerkit.connect("memory://") as broker:
            worker = brokerkit.Worker(broker)
            worker.handler("t", concurrency=3, prefetch=4)(sync_handler)
            broker.publish_many("t", list(range(30)))
            with worker.running():
                wait_until(
                    lambda: state["done"] == 30, "the 30 messages to be handled", within=DEADLINE
                )
            peak = worker.stats()[0].peak_in_flight
    else:

        async def main() -> int:
            async with brokerkit.aio.connect("memory://") as broker:
                worker = brokerkit.aio.Worker(broker)
                handler = async_handler if kind == "async-coroutine" else sync_handler
                worker.handler("t", concurrency=3, prefetch=4)(handler)
                await broker.publish_many("t", list(range(30)))
                async with worker.running():
                    while state["done"] < 30:
                        await asyncio.sleep(0.01)
                return worker.stats()[0].peak_in_flight

        peak = asyncio.run(main())
    assert state["peak"] == 3
    assert peak == 3


@pytest.mark.parametrize(("concurrency", "prefetch"), [(2, 3), (2, 0)])
def test_prefetch_bounds_the_deliveries_that_wait(concurrency: int, prefetch: int) -> None:
    gate = threading.Event()
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        register = worker.handler("t", concurrency=concurrency, prefetch=prefetch)
        register(lambda body: gate.wait(DEADLINE))
        broker.publish_many("t", list(range(20)))
        leased: list[int] = []
        with worker.running():
            wait_until(
                lambda: worker.stats()[0].in_flight == concurrency,
                "every slot to be busy",
                within=DEADLINE,
            )
            for _ in range(20):  # every slot busy: what is leased is running or waiting
                leased.append(broker.inspect("t").in_flight)
            gate.set()
            wait_until(
                lambda: worker.stats()[0].processed == 20,
                "the 20 messages to be processed",
                within=DEADLINE,
            )
        assert max(leased) <= concurrency + prefetch
        assert worker.stats()[0].peak_waiting <= prefetch
        if prefetch == 0:
            assert set(leased) == {concurrency}


def test_leases_of_waiting_and_running_deliveries_are_renewed() -> None:
    """A 0.5 s visibility timeout, one slot, two deliveries waiting while the first
    handler runs for three timeouts: none is redelivered. (The renewals come every
    timeout / 3; one would have to be late by a third of a second, on a loaded machine,
    for a lease to run out.)"""
    with brokerkit.connect("memory://", visibility_timeout=0.5) as broker:
        worker = brokerkit.Worker(broker)
        seen: list[tuple[Any, int]] = []
        first = threading.Event()

        @worker.handler("t", concurrency=1, prefetch=2)
        def slow(body: int, delivery: brokerkit.Delivery) -> None:
            seen.append((body, delivery.attempt))
            if body == 0:
                first.set()
                threading.Event().wait(1.5)  # the work itself: three visibility timeouts

        broker.publish_many("t", [0, 1, 2])
        with worker.running():
            assert first.wait(DEADLINE)
            wait_until(
                lambda: worker.stats()[0].peak_waiting == 2,
                "two deliveries waiting at once",
                within=DEADLINE,
            )
            wait_until(
                lambda: worker.stats()[0].processed == 3,
                "the 3 messages to be processed",
                within=DEADLINE,
            )
        assert sorted(seen) == [(0, 1), (1, 1), (2, 1)]
        assert broker.inspect("t").in_flight == 0


# -- stopping ---------------------------------------------------------------------------


def test_stop_drains_hands_back_what_waits_and_lets_running_handlers_finish() -> None:
    gate = threading.Event()
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker, grace=DEADLINE)
        worker.handler("t", concurrency=2, prefetch=3)(lambda body: gate.wait(DEADLINE))
        broker.publish_many("t", list(range(10)))
        runner = threading.Thread(target=worker.run)
        runner.start()
        wait_until(
            lambda: worker.stats()[0].in_flight == 2, "both slots to be busy", within=DEADLINE
        )
        worker.stop()
        wait_until(
            lambda: broker.inspect("t").in_flight == 2,
            "the waiting deliveries to go back",
            within=DEADLINE,
        )
        assert runner.is_alive()
        gate.set()
        runner.join(DEADLINE)
        assert not runner.is_alive()
        assert worker.drained
        assert worker.stats()[0].processed == 2
        assert broker.inspect("t").in_flight == 0
        left = [d.body for d in broker.consume("t", timeout=0)]
        assert sorted(left) == list(range(2, 10))


def test_past_the_grace_period_run_returns_and_a_handler_thread_keeps_its_delivery() -> None:
    gate = threading.Event()
    with brokerkit.connect("memory://", visibility_timeout=0.5) as broker:
        worker = brokerkit.Worker(broker, grace=0.2)
        worker.handler("t", concurrency=1, prefetch=2)(lambda body: gate.wait(DEADLINE))
        broker.publish_many("t", [1, 2, 3])
        runner = threading.Thread(target=worker.run)
        runner.start()
        wait_until(lambda: worker.stats()[0].in_flight == 1, "the slot to be busy", within=DEADLINE)
        worker.stop()
        runner.join(DEADLINE)
        assert not runner.is_alive()
        assert not worker.drained
        # the two waiting went back; the one a thread still handles stays leased
        assert broker.inspect("t").in_flight == 1
        gate.set()
        wait_until(
            lambda: worker.stats()[0].in_flight == 0,
            "the handled delivery to be settled",
            within=DEADLINE,
        )
        # its result is dropped: not acked, it comes again once its lease runs out
        assert worker.stats()[0].processed == 0
        left = sorted((d.body, d.attempt) for d in broker.consume("t", timeout=DEADLINE, limit=3))
        assert left == [(1, 2), (2, 1), (3, 1)]


def test_a_second_stop_cancels_async_handlers_and_nacks_their_deliveries() -> None:
    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker, grace=DEADLINE)
            never = asyncio.Event()

            @worker.handler("t", concurrency=2, prefetch=0)
            async def stuck(body: int) -> None:
                await never.wait()

            await broker.publish_many("t", [1, 2, 3])
            task = asyncio.create_task(worker.run())
            while worker.stats()[0].in_flight < 2:
                await asyncio.sleep(0.01)
            worker.stop()
            worker.stop()  # changes nothing
            while (await broker.inspect("t")).in_flight > 2:  # the waiting one went back
                await asyncio.sleep(0.01)
            assert not task.done()
            worker.stop(now=True)
            await asyncio.wait_for(task, DEADLINE)
            assert not worker.drained
            assert (await broker.inspect("t")).in_flight == 0
            left = [(d.body, d.attempt) async for d in broker.consume("t", timeout=0)]
            # the two cut short were nacked (an attempt counted); the waiting one was
            # handed back (none counted)
            assert sorted(attempt for _, attempt in left) == [1, 2, 2]
            assert sorted(body for body, _ in left) == [1, 2, 3]

    asyncio.run(main())


def test_a_hard_stop_leaves_a_handler_thread_still_running_its_delivery() -> None:
    """Under the asyncio worker a plain function runs in a thread, which a hard stop
    cannot stop: its delivery is not handed back (no other consumer gets it while the
    handler runs); it stays leased until its lease runs out."""
    entered, gate = threading.Event(), threading.Event()

    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker, grace=DEADLINE)

            @worker.handler("t", prefetch=0)
            def slow(body: int) -> None:
                entered.set()
                gate.wait(DEADLINE)

            await broker.publish("t", 1)
            task = asyncio.create_task(worker.run())
            while not entered.is_set():
                await asyncio.sleep(0.01)
            worker.stop(now=True)
            await asyncio.wait_for(task, DEADLINE)
            assert not worker.drained
            assert (await broker.inspect("t")).in_flight == 1
            assert [d async for d in broker.consume("t", timeout=0)] == []
            gate.set()

    try:
        asyncio.run(main())
    finally:
        gate.set()


def test_a_handler_cut_short_by_a_hard_stop_counts_an_attempt() -> None:
    """A coroutine handler that always hangs, stopped hard on every delivery, still
    reaches max_deliveries and is dead-lettered (a hand-back would count no attempt)."""

    async def main() -> None:
        async with brokerkit.aio.connect("memory://", max_deliveries=2) as broker:
            worker = brokerkit.aio.Worker(broker, grace=DEADLINE)
            attempts: list[int] = []
            never = asyncio.Event()

            @worker.handler("t", prefetch=0)
            async def hangs(delivery: brokerkit.aio.AsyncDelivery) -> None:
                attempts.append(delivery.attempt)
                await never.wait()

            await broker.publish("t", "x")
            for run in (1, 2):
                task = asyncio.create_task(worker.run())
                while len(attempts) < run:
                    await asyncio.sleep(0.01)
                worker.stop(now=True)
                await asyncio.wait_for(task, DEADLINE)
            assert attempts == [1, 2]
            info = await broker.inspect("t")
            assert (info.in_flight, info.dead_lettered) == (0, 1)
            (stats,) = worker.stats()
            assert (stats.retried, stats.dead_lettered) == (1, 1)

    asyncio.run(main())


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_slot_outlives_an_unexpected_error_from_receiving(
    flavour: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Receiving raises a RuntimeError once (a bug, not a BrokerError): the slot logs
    it and carries on, and what is published afterwards is still handled."""
    failed = threading.Event()

    def failing_once(fetch: Any) -> Any:
        def fetch_or_fail(*args: Any) -> Any:
            if not failed.is_set():
                failed.set()
                raise RuntimeError("a bug in receiving")
            return fetch(*args)

        return fetch_or_fail

    got: list[int] = []
    if flavour == "sync":
        with brokerkit.connect("memory://") as broker:
            monkeypatch.setattr(broker, "_fetch", failing_once(broker._fetch))
            worker = brokerkit.Worker(broker)
            worker.handler("t")(got.append)
            with worker.running():
                wait_until(failed.is_set, "the failed fetch", within=DEADLINE)
                broker.publish("t", 1)
                wait_until(
                    lambda: got == [1],
                    "the message published after the failed fetch",
                    within=DEADLINE,
                )
            assert worker.drained
    else:

        async def main() -> None:
            async with brokerkit.aio.connect("memory://") as broker:
                monkeypatch.setattr(broker, "_fetch", failing_once(broker._fetch))
                worker = brokerkit.aio.Worker(broker)
                worker.handler("t")(got.append)
                async with worker.running():
                    while not failed.is_set():
                        await asyncio.sleep(0.01)
                    await broker.publish("t", 1)
                    while got != [1]:
                        await asyncio.sleep(0.01)
                assert worker.drained

        asyncio.run(main())
    assert "a bug in receiving" in caplog.text


def test_a_slot_that_fails_outside_receiving_starts_over(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An error no step of the slot expects (here the broker's ack raising a
    RuntimeError once, a bug rather than a BrokerError) is logged with its traceback
    and the slot starts over: the worker's only slot still handles what comes next."""
    with brokerkit.connect("memory://") as broker:
        ack, failures = broker._ack, itertools.count()

        def ack_or_fail(deliveries: Any) -> None:
            if next(failures) == 0:
                raise RuntimeError("a bug in acking")
            ack(deliveries)

        monkeypatch.setattr(broker, "_ack", ack_or_fail)
        worker = brokerkit.Worker(broker)
        got: list[int] = []
        worker.handler("t", concurrency=1)(got.append)
        broker.publish("t", 1)
        with worker.running():
            wait_until(
                lambda: "a slot failed and starts over" in caplog.text,
                "the slot's failure to be logged",
                within=DEADLINE,
            )
            broker.publish("t", 2)
            wait_until(
                lambda: 2 in got,
                "the message published after the slot started over",
                within=DEADLINE,
            )
        assert worker.drained
        assert "a bug in acking" in caplog.text


@dataclasses.dataclass(frozen=True)
class _Gives(RetryPolicy):
    value: Any = -1.0

    def delay(self, attempt: int) -> float:
        return self.value  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("delay", "shown"),
    [(-1.0, "-1.0"), (float("nan"), "nan"), (10**400, "1000000")],
    ids=["negative", "nan", "an int past floats"],
)
def test_a_retry_policy_with_an_invalid_delay_is_logged_and_retried_at_once(
    caplog: pytest.LogCaptureFixture, delay: Any, shown: str
) -> None:
    """Before, an int too large for a float raised OverflowError from the check: the
    slot failed and started over instead."""
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        attempts: list[int] = []

        @worker.handler("t", retry=_Gives(value=delay))
        def flaky(delivery: brokerkit.Delivery) -> None:
            attempts.append(delivery.attempt)
            if delivery.attempt == 1:
                raise RuntimeError("once")

        broker.publish("t", 1)
        with worker.running():
            wait_until(lambda: attempts == [1, 2], "attempts 1 and 2", within=DEADLINE)
            wait_until(
                lambda: broker.inspect("t").in_flight == 0,
                "every 't' delivery to be settled",
                within=DEADLINE,
            )
        assert f"gave the delay {shown}" in caplog.text
        assert "for attempt 1" in caplog.text
        assert "a slot failed" not in caplog.text
        (stats,) = worker.stats()
        assert (stats.processed, stats.failed, stats.retried) == (1, 1, 1)


def test_a_failed_ack_hands_the_delivery_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ack fails (a wrapper on the real memory broker's ack raises, twice): the
    worker hands the delivery back with a counted nack rather than holding it."""
    with brokerkit.connect("memory://") as broker:
        ack, failures = broker._ack, itertools.count()

        def ack_or_fail(deliveries: Any) -> None:
            if next(failures) < 2:
                raise brokerkit.ConnectionFailed("the ack was lost")
            ack(deliveries)

        monkeypatch.setattr(broker, "_ack", ack_or_fail)
        worker = brokerkit.Worker(broker)
        attempts: list[int] = []
        worker.handler("t")(lambda delivery: attempts.append(delivery.attempt))
        broker.publish("t", 1)
        with worker.running():
            wait_until(lambda: attempts == [1, 2, 3], "attempts 1, 2 and 3", within=DEADLINE)
            wait_until(
                lambda: broker.inspect("t").in_flight == 0,
                "every 't' delivery to be settled",
                within=DEADLINE,
            )
        assert broker.inspect("t").dead_lettered == 0


# -- registration -----------------------------------------------------------------------


def test_a_callable_object_with_an_async_call_is_awaited_by_the_async_worker() -> None:
    class Handler:
        def __init__(self) -> None:
            self.got: list[int] = []

        async def __call__(self, body: int) -> None:
            await asyncio.sleep(0)
            self.got.append(body)

    handler = Handler()

    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)
            worker.handler("t", name="object")(handler)
            await broker.publish_many("t", [1, 2])
            async with worker.running():
                while len(handler.got) < 2:
                    await asyncio.sleep(0.01)

    asyncio.run(main())
    assert sorted(handler.got) == [1, 2]
    with pytest.raises(brokerkit.InvalidOption, match="coroutine function"):
        brokerkit.Worker(brokerkit.connect("memory://")).handler("t", name="object")(handler)


def test_bad_registrations_are_refused_with_a_clear_error() -> None:
    worker = brokerkit.Worker(brokerkit.connect("memory://"))
    with pytest.raises(brokerkit.InvalidOption, match="concurrency must be"):
        worker.handler("t", concurrency=0)(lambda body: None)
    with pytest.raises(brokerkit.InvalidOption, match="coroutine function"):

        @worker.handler("t")
        async def coro(body: Any) -> None: ...

    with pytest.raises(brokerkit.InvalidOption, match="two body parameters"):
        worker.handler("t")(lambda a, b: None)
    with pytest.raises(brokerkit.InvalidOption, match="retry must be a retry policy"):
        worker.handler("t", retry=3)(lambda body: None)  # type: ignore[arg-type]
    worker.handler("t")(lambda body: None)
    with pytest.raises(brokerkit.InvalidOption, match="give one its own group"):
        worker.handler("t", name="other")(lambda body: None)
    with pytest.raises(brokerkit.InvalidOption, match="jitter"):
        Exponential(1.0, jitter=1.5)
    with pytest.raises(brokerkit.ConfigurationError, match="no broker"):
        brokerkit.Worker().run()


def test_exponential_backoff_is_capped_and_jittered_within_its_bounds() -> None:
    policy = Exponential(1.0, factor=3, cap=20, jitter=0.2)
    for attempt in range(1, 12):
        base = min(20.0, 3.0 ** (attempt - 1))
        delay = policy.delay(attempt)
        assert base * 0.8 <= delay <= min(base * 1.2, 20.0)
    assert Fixed(0).delays is False
    assert Immediate().limit(4) == 4
    assert Fixed(1, max_attempts=2).limit(4) == 2


def test_an_annotation_that_does_not_resolve_is_refused_rather_than_ignored() -> None:
    @dataclasses.dataclass
    class Local:
        n: int

    def handle(body: Local) -> None: ...  # a string under `from __future__ import annotations`

    worker = brokerkit.Worker(brokerkit.connect("memory://"))
    with pytest.raises(brokerkit.InvalidOption, match="'Local' of parameter 'body'"):
        worker.handler("t")(handle)
    with pytest.raises(brokerkit.InvalidOption, match="takes a broker"):
        brokerkit.Worker("memory://")  # type: ignore[arg-type]


def test_the_core_never_imports_pydantic_or_msgspec_nor_asyncio_for_the_sync_worker() -> None:
    code = (
        "import sys, brokerkit, brokerkit.worker\n"
        "assert 'asyncio' not in sys.modules, 'import brokerkit imported asyncio'\n"
        "import brokerkit.aio\n"
        "w = brokerkit.Worker(brokerkit.connect('memory://'))\n"
        "w.handler('t')(lambda body: None)\n"
        "brokerkit.connect('memory://').publish('t', {'a': 1})\n"
        "print(sorted({'pydantic', 'msgspec'} & set(sys.modules)))\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_a_worker_runs_once_at_a_time() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("t")(lambda body: None)
        with worker.running(), pytest.raises(brokerkit.ConfigurationError, match="already"):
            worker.run()
