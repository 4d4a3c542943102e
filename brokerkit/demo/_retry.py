"""A failing consumer: nack, redelivery, and the dead-letter topic past max_deliveries."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from brokerkit._broker import Broker
from brokerkit._delivery import Delivery
from brokerkit.demo._services import Order, ServiceFailure
from brokerkit.demo._tally import Tally
from brokerkit.worker import Worker

__all__ = ["DeadLetter", "Event", "RetryResult", "flaky_sms", "run_failing_consumer"]


@dataclass(frozen=True)
class Event:
    """One delivery to the SMS consumer and what became of it.

    :ivar outcome: ``"sent"``, or the error that made the consumer nack it.
    """

    order_id: int
    attempt: int
    outcome: str


@dataclass(frozen=True)
class DeadLetter:
    """An order that reached the dead-letter topic, with the headers the broker added."""

    order_id: int
    reason: str
    deliveries: str
    original_topic: str


@dataclass(frozen=True)
class RetryResult:
    """The failing consumer's run, reconciled.

    :ivar events: every delivery, in the order the consumer saw them.
    :ivar sent: distinct orders whose SMS went out.
    :ivar duplicates: orders whose SMS went out more than once.
    :ivar dead: the orders found in the dead-letter topic.
    """

    orders: int
    max_deliveries: int
    dead_letter_topic: str
    events: tuple[Event, ...]
    sent: int
    duplicates: int
    dead: tuple[DeadLetter, ...]

    @property
    def nacked(self) -> int:
        """Deliveries the consumer handed back."""
        return sum(1 for e in self.events if e.outcome != "sent")

    @property
    def redelivered(self) -> int:
        """Deliveries that were a second (or later) attempt."""
        return sum(1 for e in self.events if e.attempt > 1)

    @property
    def recovered(self) -> tuple[int, ...]:
        """Orders that failed at first and went out on a redelivery."""
        return tuple(
            sorted({e.order_id for e in self.events if e.outcome == "sent" and e.attempt > 1})
        )

    @property
    def reconciled(self) -> bool:
        """Every order either sent exactly once or dead-lettered, never both."""
        dead = {d.order_id for d in self.dead}
        return self.sent + len(dead) == self.orders and self.duplicates == 0


def flaky_sms(order: Order, attempt: int) -> None:
    """The SMS gateway of the demo: it errors on two orders in ten.

    Orders whose id ends in 0 carry an invalid phone number and fail every time;
    orders whose id ends in 5 meet a gateway timeout on the first attempt only.

    :raises ServiceFailure: the SMS could not be sent.
    """
    if order.order_id % 10 == 0:
        raise ServiceFailure("invalid phone number")
    if order.order_id % 10 == 5 and attempt == 1:
        raise ServiceFailure("gateway timeout")


def run_failing_consumer(
    broker: Broker,
    orders: Sequence[Order],
    *,
    topic: str = "order.created",
    work_ms: float = 2.0,
    timeout: float = 30.0,
) -> RetryResult:
    """Publish ``orders`` and consume them with :func:`flaky_sms`: a failure raises,
    and the worker hands the delivery back, or dead-letters it (with the error as its
    reason) once it reached the broker's ``max_deliveries``.

    ``broker`` should have ``max_deliveries`` set (the runner uses 3); a second
    handler reads the dead-letter topic and records what it finds there.
    """
    tally = Tally()
    events: list[Event] = []
    dead: list[DeadLetter] = []
    lock = threading.Lock()
    worker = Worker(broker, grace=timeout)

    @worker.handler(topic, name="sms")
    def sms(body: dict[str, int], delivery: Delivery) -> None:
        order = Order.from_body(body)
        time.sleep(work_ms / 1000)
        try:
            flaky_sms(order, delivery.attempt)
        except ServiceFailure as exc:
            with lock:
                events.append(Event(order.order_id, delivery.attempt, str(exc)))
            tally.record("failures", order.order_id)
            raise
        with lock:
            events.append(Event(order.order_id, delivery.attempt, "sent"))
        tally.record("sms", order.order_id)

    dlq = broker.dead_letter_topic(topic)

    @worker.handler(dlq, name="dead-letters")
    def dead_letters(body: dict[str, int], delivery: Delivery) -> None:
        order = Order.from_body(body)
        headers = delivery.headers
        with lock:
            dead.append(
                DeadLetter(
                    order.order_id,
                    headers.get("x-dead-letter-reason", "?"),
                    headers.get("x-deliveries", "?"),
                    headers.get("x-original-topic", "?"),
                )
            )
        tally.record("dead", order.order_id)

    expected = {o.order_id for o in orders}
    with _failures_told_by_the_scene(topic, dlq), worker.running():
        broker.publish_many(topic, [o.as_body() for o in orders])
        tally.wait_until(lambda: tally.seen("sms") | tally.seen("dead") >= expected, timeout)
    with lock:
        return RetryResult(
            orders=len(orders),
            max_deliveries=broker.options.max_deliveries or 0,
            dead_letter_topic=dlq,
            events=tuple(events),
            sent=len(tally.seen("sms") & expected),
            duplicates=tally.duplicates("sms"),
            dead=tuple(sorted(dead, key=lambda d: d.order_id)),
        )


@contextlib.contextmanager
def _failures_told_by_the_scene(*topics: str) -> Iterator[None]:
    """Leave out the worker's log lines about the failures of ``topics``' handlers
    (WARNING at a retry, ERROR as a message is dead-lettered): the scene's failures are
    on purpose, and its tables tell each one. Lines about anything else still show."""

    def other(record: logging.LogRecord) -> bool:
        return getattr(record, "topic", None) not in topics

    logger = logging.getLogger("brokerkit.worker")
    logger.addFilter(other)
    try:
        yield
    finally:
        logger.removeFilter(other)
