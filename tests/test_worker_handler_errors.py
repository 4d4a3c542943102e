"""The worker and what handlers raise: a BaseException (SystemExit, KeyboardInterrupt,
GeneratorExit, a CancelledError the worker did not cause) is a failure like any other
and its slot lives on; an error whose ``str()`` raises is retried and dead-lettered
with a reason all the same; an invalid body on a backend without dead letters is not
counted as dead-lettered. With them, the worker's smaller edges: ``wait_ready`` in a
second event loop, ``waiting`` after a drain, ``dataclasses.replace`` of a policy, and
body annotations that hold a model without being one."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, List, Optional  # noqa: UP035 - List is under test

import pydantic
import pytest

import brokerkit
import brokerkit.aio
from brokerkit.worker import Exponential, RetryPolicy, StatsSnapshot
from tests.conftest import registered
from tests.test_worker import DEADLINE
from tests.waiting import wait_until


@dataclasses.dataclass(frozen=True)
class Recording(RetryPolicy):
    """Immediate retries, noting each attempt the worker asks a delay for (so that a
    test sees the policy applied without timing anything)."""

    asked: list[int] = dataclasses.field(default_factory=list, compare=False)

    def delay(self, attempt: int) -> float:
        self.asked.append(attempt)
        return 0.0


def short(annotation: Any) -> str:
    """A test id: the annotation without module paths."""
    return repr(annotation).replace(f"{__name__}.", "").replace("typing.", "")


async def until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Poll ``condition`` on the loop until it holds, failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def dead_letter_reason(broker: brokerkit.Broker, topic: str) -> str:
    wait_until(lambda: broker.inspect(topic).dead_lettered == 1, "the dead letter", within=DEADLINE)
    (delivery,) = broker.consume(broker.dead_letter_topic(topic), timeout=0)
    delivery.ack()
    return delivery.headers["x-dead-letter-reason"]


# -- 1. a handler raising a BaseException: a failure, and its slot lives on ------------


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_a_sync_handler_raising_a_base_exception_fails_and_its_slot_lives_on(
    kind: type[BaseException],
) -> None:
    policy = Recording()
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        calls: list[tuple[int, int]] = []

        @worker.handler("jobs", concurrency=1, retry=policy)
        def job(body: dict[str, int], delivery: brokerkit.Delivery) -> None:
            calls.append((body["n"], delivery.attempt))
            if body["n"] == 1 and delivery.attempt == 1:
                raise kind("raised by the handler itself")

        broker.publish_many("jobs", [{"n": 1}, {"n": 2}])
        with worker.running():
            # the one slot took the next ones
            wait_until(lambda: len(calls) == 3, "three handler calls", within=DEADLINE)
            wait_until(
                lambda: broker.inspect("jobs").in_flight == 0,
                "no delivery in flight",
                within=DEADLINE,
            )
        assert sorted(calls) == [(1, 1), (1, 2), (2, 1)]
        (stats,) = worker.stats()
        assert (stats.processed, stats.failed, stats.retried, stats.dead_lettered) == (2, 1, 1, 0)
        assert policy.asked == [1]  # retried under its policy, not as a hard stop


async def _raise(kind: str) -> None:
    if kind == "a CancelledError of another task":
        other = asyncio.ensure_future(asyncio.sleep(DEADLINE))
        await asyncio.sleep(0)
        other.cancel()
        await other  # raises CancelledError here; this task was not cancelled
    raise {"GeneratorExit": GeneratorExit, "SystemExit": SystemExit}.get(kind, KeyboardInterrupt)


@pytest.mark.parametrize(
    "kind",
    [
        "a CancelledError of another task",
        "GeneratorExit",
        "SystemExit in a handler thread",
    ],
)
def test_an_asyncio_handler_raising_a_base_exception_fails_and_its_slot_lives_on(
    kind: str,
) -> None:
    policy = Recording()
    calls: list[tuple[int, int]] = []

    async def main() -> StatsSnapshot:
        async with brokerkit.aio.connect("memory://") as broker:
            worker = brokerkit.aio.Worker(broker)
            if kind == "SystemExit in a handler thread":

                @worker.handler("jobs", concurrency=1, retry=policy)
                def plain(body: dict[str, int], delivery: brokerkit.aio.AsyncDelivery) -> None:
                    calls.append((body["n"], delivery.attempt))
                    if body["n"] == 1 and delivery.attempt == 1:
                        raise SystemExit(3)

            else:

                @worker.handler("jobs", concurrency=1, retry=policy)
                async def job(body: dict[str, int], delivery: brokerkit.aio.AsyncDelivery) -> None:
                    calls.append((body["n"], delivery.attempt))
                    if body["n"] == 1 and delivery.attempt == 1:
                        await _raise(kind)

            await broker.publish_many("jobs", [{"n": 1}, {"n": 2}])
            async with worker.running():
                await until(lambda: len(calls) == 3)
            (stats,) = worker.stats()
            return stats

    stats = asyncio.run(main())
    assert sorted(calls) == [(1, 1), (1, 2), (2, 1)]
    assert (stats.processed, stats.failed, stats.retried, stats.dead_lettered) == (2, 1, 1, 0)
    assert policy.asked == [1]


# -- 2. an error whose str() raises ---------------------------------------------------


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise ValueError("no text for this error")


class SelfUnprintableError(Exception):
    def __str__(self) -> str:
        raise SelfUnprintableError  # whose own str() fails again


@pytest.mark.parametrize("error", [UnprintableError, SelfUnprintableError])
def test_an_error_whose_str_raises_is_retried_then_dead_lettered_with_a_reason(
    error: type[Exception],
) -> None:
    policy = Recording()
    with brokerkit.connect("memory://", max_deliveries=2) as broker:
        worker = brokerkit.Worker(broker)
        attempts: list[int] = []

        @worker.handler("jobs", retry=policy)
        def job(delivery: brokerkit.Delivery) -> None:
            attempts.append(delivery.attempt)
            raise error

        broker.publish("jobs", {"n": 1})
        with worker.running():
            reason = dead_letter_reason(broker, "jobs")
            wait_until(
                lambda: broker.inspect("jobs").in_flight == 0,
                "no delivery in flight",
                within=DEADLINE,
            )
        name = error.__name__
        assert reason == f"{name}: <{name}: str() failed>"
        assert attempts == [1, 2]
        assert policy.asked == [1]
        (stats,) = worker.stats()
        assert (stats.failed, stats.retried, stats.dead_lettered) == (2, 1, 1)


@dataclasses.dataclass
class UnprintablyRefused:
    order_id: int

    def __post_init__(self) -> None:
        if self.order_id < 0:
            raise UnprintableError


def test_a_body_type_raising_an_error_whose_str_raises_is_dead_lettered_at_once() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        calls: list[Any] = []

        @worker.handler("orders")
        def ship(order: UnprintablyRefused) -> None:
            calls.append(order)

        broker.publish("orders", {"order_id": -1})
        with worker.running():
            reason = dead_letter_reason(broker, "orders")
        assert reason == (
            "invalid body: UnprintablyRefused: UnprintableError: <UnprintableError: str() failed>"
        )
        assert calls == []
        (stats,) = worker.stats()
        assert (stats.dead_lettered, stats.retried, stats.failed) == (1, 0, 0)


# -- 3. wait_ready in a second event loop ---------------------------------------------


def test_an_asyncio_worker_waits_ready_in_each_event_loop_it_runs_in() -> None:
    worker = brokerkit.aio.Worker(grace=1)
    seen: list[int] = []

    @worker.handler("jobs")
    async def job(body: int) -> None:
        seen.append(body)

    async def once(n: int) -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            worker.broker = broker
            task = asyncio.create_task(worker.run())
            assert await worker.wait_ready(DEADLINE)  # before run even started
            await broker.publish("jobs", n)
            await until(lambda: n in seen)
            worker.stop()
            await task

    asyncio.run(once(1))
    asyncio.run(once(2))  # a new loop
    assert seen == [1, 2]


def test_a_sync_worker_waits_ready_in_each_run() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker, grace=1)

        @worker.handler("jobs")
        def job(body: Any) -> None: ...

        for _ in range(2):
            assert not worker.wait_ready(0)
            thread = threading.Thread(target=worker.run)
            thread.start()
            assert worker.wait_ready(DEADLINE)
            worker.stop()
            thread.join(DEADLINE)
            assert not thread.is_alive() and worker.drained


# -- 4. an invalid body where there are no dead letters --------------------------------


@dataclasses.dataclass
class Order:
    order_id: int


class Outcomes:
    """A plugin that writes down how each delivery ended."""

    def __init__(self) -> None:
        self.ends: list[tuple[str, str]] = []

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str) -> None:
        self.ends.append((delivery.topic, outcome))

    def of(self, topic: str) -> list[str]:
        return [outcome for where, outcome in self.ends if where == topic]


@pytest.fixture
def outcomes() -> Iterator[Outcomes]:
    yield from registered(Outcomes())


def test_an_invalid_body_without_dead_letters_is_not_counted_as_dead_lettered(
    redis_broker: Callable[..., Any], outcomes: Outcomes
) -> None:
    broker = redis_broker("redis+pubsub")
    assert brokerkit.Capability.DEAD_LETTER not in broker.capabilities
    worker = brokerkit.Worker(broker)
    shipped: list[Order] = []

    @worker.handler("orders")
    def ship(order: Order) -> None:
        shipped.append(order)

    with worker.running():
        broker.publish("orders", {"no": "order"})
        broker.publish("orders", {"order_id": 1})  # ORDERED: after the invalid one
        wait_until(lambda: len(outcomes.of("orders")) == 2, "the two outcomes", within=DEADLINE)
    assert shipped == [Order(1)]
    assert outcomes.of("orders") == ["nack", "ack"]
    (stats,) = worker.stats()
    assert (stats.processed, stats.dead_lettered, stats.failed) == (1, 0, 0)


def test_an_invalid_body_is_dead_lettered_where_the_backend_has_dead_letters(
    outcomes: Outcomes,
) -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("orders")
        def ship(order: Order) -> None: ...

        broker.publish("orders", {"no": "order"})
        with worker.running():
            assert dead_letter_reason(broker, "orders").startswith("invalid body: Order:")
        assert outcomes.of("orders") == ["dead-letter"]
        assert worker.stats()[0].dead_lettered == 1


# -- 5. waiting after a drain --------------------------------------------------------


def test_nothing_is_waiting_once_the_drain_handed_the_prefetched_deliveries_back() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        waiting_then: list[int] = []

        @worker.handler("jobs", concurrency=1, prefetch=5)
        def job(body: int) -> None:
            waiting_then.append(worker.stats()[0].waiting)
            worker.stop()
            # the drain hands back the five that wait: only this one stays leased
            wait_until(
                lambda: broker.inspect("jobs").in_flight == 1,
                "only the handled delivery in flight",
                within=DEADLINE,
            )

        broker.publish_many("jobs", list(range(6)))  # one fetch of 6: 1 handled, 5 wait
        with worker.running():
            wait_until(lambda: waiting_then, "the handler call", within=DEADLINE)
        assert waiting_then == [5]
        (stats,) = worker.stats()
        assert (stats.processed, stats.waiting, stats.peak_waiting) == (1, 0, 5)
        rest = list(broker.consume("jobs", timeout=0))
        assert sorted(d.body for d in rest) == [1, 2, 3, 4, 5]


# -- 6. dataclasses.replace of a retry policy -----------------------------------------


def test_an_exponential_policy_can_be_replaced_field_by_field() -> None:
    policy = dataclasses.replace(Exponential(0.5, factor=3, jitter=0), max_attempts=3)
    assert policy == Exponential(0.5, factor=3, jitter=0, max_attempts=3)
    assert [policy.delay(n) for n in (1, 2)] == [0.5, 1.5]
    jittered = dataclasses.replace(Exponential(1.0), cap=2.0)
    assert jittered.cap == 2.0 and 0.9 <= jittered.delay(1) <= 1.1


# -- 7. a body annotation that holds a model without being one ------------------------


class PydanticOrder(pydantic.BaseModel):
    order_id: int


@pytest.mark.parametrize(
    "annotation",
    [
        PydanticOrder | None,
        Optional[PydanticOrder],  # noqa: UP045 - the spelling under test
        list[PydanticOrder],
        List[PydanticOrder],  # noqa: UP006 - the spelling under test
        dict[str, Order],
        Order | dict[str, Any],
        Optional[Annotated[Order, "meta"]],  # noqa: UP045 - the spelling under test
    ],
    ids=short,
)
def test_a_body_annotation_holding_a_model_is_refused_at_registration(annotation: Any) -> None:
    worker = brokerkit.Worker()

    def ship(order: Any) -> None: ...

    ship.__annotations__["order"] = annotation
    with pytest.raises(brokerkit.InvalidOption) as caught:
        worker.handler("orders")(ship)
    message = str(caught.value)
    assert "handler test_a_body_annotation_holding_a_model_is_refused" in message
    assert repr(annotation) in message
    assert "a pydantic model, a msgspec Struct or a dataclass itself" in message
    assert worker.handlers == []


@pytest.mark.parametrize(
    "annotation",
    [Annotated[PydanticOrder, "meta"], dict[str, int], str | bytes, list[int], Any, Optional[int]],  # noqa: UP045
    ids=short,
)
def test_a_model_itself_or_a_plain_type_is_taken(annotation: Any) -> None:
    worker = brokerkit.Worker()

    def ship(order: Any) -> None: ...

    ship.__annotations__["order"] = annotation
    worker.handler("orders")(ship)
    assert len(worker.handlers) == 1


def test_an_annotated_model_is_validated() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        got: list[Any] = []

        @worker.handler("orders")
        def ship(order: Annotated[PydanticOrder, "meta"]) -> None:
            got.append(order)

        broker.publish_many("orders", [{"order_id": 1}, {"no": "order"}])
        with worker.running():
            reason = dead_letter_reason(broker, "orders")
            wait_until(lambda: got, "the valid order", within=DEADLINE)
        assert got == [PydanticOrder(order_id=1)]
        assert reason.startswith("invalid body: PydanticOrder:")


_STOPS_THE_PROGRAM = """
import asyncio, json, sys
import brokerkit, brokerkit.aio

kind = {"KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit}[sys.argv[1]]
calls = []


async def main():
    async with brokerkit.aio.connect("memory://") as broker:
        worker = brokerkit.aio.Worker(broker)

        @worker.handler("jobs", concurrency=1)
        async def job(body, delivery):
            calls.append(body["n"])
            raise kind()

        await broker.publish_many("jobs", [{"n": 1}, {"n": 2}])
        async with worker.running():
            await asyncio.sleep(60)  # ended by what the handler raises, or failed


try:
    asyncio.run(main())
    raised = None
except BaseException as exc:
    raised = type(exc).__name__
print(json.dumps({"raised": raised, "calls": calls}))
"""


@pytest.mark.parametrize("kind", ["KeyboardInterrupt", "SystemExit"])
def test_ctrl_c_or_sys_exit_in_an_asyncio_handler_stops_the_program(kind: str) -> None:
    """On the event loop's thread a KeyboardInterrupt is the user's Ctrl-C (Python
    raises it in whatever coroutine runs) and SystemExit a sys.exit(): they stop the
    program as they would without the worker, not retried as the handler's failure;
    before, the asyncio worker retried them and ran on. In a process of its own: a
    KeyboardInterrupt is pytest's own signal to stop."""
    done = subprocess.run(
        [sys.executable, "-c", _STOPS_THE_PROGRAM, kind],
        capture_output=True,
        text=True,
        timeout=DEADLINE * 4,
        check=False,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["raised"] == kind, done.stderr
    assert result["calls"] == [1]  # nothing ran on after it
