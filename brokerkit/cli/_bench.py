"""Throughput and latency of one brokerkit URL: the measurements behind
``brokerkit bench`` and the brokerkit rows of ``benchmarks/``."""

from __future__ import annotations

import math
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit._plugins import connect
from brokerkit._subscription import Subscription
from brokerkit.exceptions import BrokerError

__all__ = ["STEPS", "Measurement", "Progress", "bench_url", "percentile"]

#: ``(step, done, total)``: called as a step advances, to draw a progress bar.
Progress = Callable[[str, int, int], None]

#: Every step, in the order they run.
STEPS = ("publish", "publish_many", "consume_ack_p1", "consume_ack_p100", "latency")


@dataclass(frozen=True)
class Measurement:
    """One measured step.

    :ivar step: one of :data:`STEPS` (for a backend without PERSISTENT the
        consume steps measure receiving while publishing).
    :ivar p50_ms: median publish-to-receive latency (the ``latency`` step).
    """

    step: str
    messages: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds if self.seconds > 0 else float("inf")

    @classmethod
    def of_latencies(cls, latencies: Sequence[float]) -> Measurement:
        """The ``latency`` step from one publish-to-receive time per message."""
        return cls(
            "latency",
            len(latencies),
            sum(latencies),
            p50_ms=1000 * statistics.median(latencies),
            p99_ms=1000 * percentile(latencies, 0.99),
        )


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile of ``values``, nearest rank."""
    ordered = sorted(values)
    index = min(max(math.ceil(fraction * len(ordered)) - 1, 0), len(ordered) - 1)
    return ordered[index]


def _nothing(step: str, done: int, total: int) -> None:
    pass


def bench_url(
    url: str,
    *,
    count: int = 5000,
    size: int = 100,
    batch: int = 500,
    latency_count: int = 500,
    steps: Sequence[str] = STEPS,
    progress: Progress | None = None,
) -> list[Measurement]:
    """Measure ``steps`` on ``url`` with ``count`` messages of ``size`` bytes.

    Each step uses a fresh topic; publish_many and the consume prefill go in
    batches of ``batch``; consumers with prefetch N ack in batches of up to N.

    :raises BrokerError: the URL cannot be reached, or a step lost messages.
    """
    report = progress or _nothing
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise BrokerError(f"unknown bench step {sorted(unknown)}; the steps are {', '.join(STEPS)}")
    body = b"x" * size
    run = secrets.token_hex(4)
    results = []
    with connect(url) as broker:
        for step in steps:
            topic = f"bench-{run}-{step}"
            if step == "publish":
                results.append(_publish(broker, topic, body, count, report))
            elif step == "publish_many":
                results.append(_publish_many(broker, topic, body, count, batch, report))
            elif step.startswith("consume_ack_p"):
                prefetch = int(step.removeprefix("consume_ack_p"))
                results.append(_consume(broker, topic, step, body, count, batch, prefetch, report))
            else:
                results.append(_latency(broker, topic, body, latency_count, report))
            if Capability.PERSISTENT in broker.capabilities:
                broker.purge(topic)
    return results


def _publish(broker: Broker, topic: str, body: bytes, count: int, report: Progress) -> Measurement:
    tick = max(count // 50, 1)
    started = time.perf_counter()
    for n in range(count):
        broker.publish(topic, body)
        if n % tick == 0:
            report("publish", n, count)
    elapsed = time.perf_counter() - started
    report("publish", count, count)
    return Measurement("publish", count, elapsed)


def _publish_many(
    broker: Broker, topic: str, body: bytes, count: int, batch: int, report: Progress
) -> Measurement:
    started = time.perf_counter()
    done = 0
    while done < count:
        size = min(batch, count - done)
        broker.publish_many(topic, [body] * size)
        done += size
        report("publish_many", done, count)
    return Measurement("publish_many", count, time.perf_counter() - started)


def _consume(
    broker: Broker,
    topic: str,
    step: str,
    body: bytes,
    count: int,
    batch: int,
    prefetch: int,
    report: Progress,
) -> Measurement:
    if Capability.PERSISTENT not in broker.capabilities:
        return _receive_while_publishing(broker, topic, step, body, count, batch, prefetch, report)
    with broker.subscribe(topic, prefetch=prefetch) as subscription:
        for start in range(0, count, batch):
            broker.publish_many(topic, [body] * min(batch, count - start))
        started = time.perf_counter()
        received = _drain(broker, subscription, step, count, prefetch, report)
        elapsed = time.perf_counter() - started
    if received < count:
        raise BrokerError(f"{step}: received {received} of {count} messages")
    return Measurement(step, count, elapsed)


def _drain(
    broker: Broker,
    subscription: Subscription,
    step: str,
    count: int,
    prefetch: int,
    report: Progress,
) -> int:
    """Receive and ack ``count`` deliveries: one by one, or in batches of ``prefetch``."""
    tick = max(count // 50, 1)
    received = 0
    pending: list[Delivery] = []
    while received < count:
        delivery = subscription.receive(timeout=5.0)
        if delivery is None:
            break
        received += 1
        pending.append(delivery)
        if len(pending) >= prefetch or subscription.buffered == 0:
            broker.ack(*pending)
            pending.clear()
        if received % tick == 0:
            report(step, received, count)
    if pending:
        broker.ack(*pending)
    report(step, received, count)
    return received


def _receive_while_publishing(
    broker: Broker,
    topic: str,
    step: str,
    body: bytes,
    count: int,
    batch: int,
    prefetch: int,
    report: Progress,
) -> Measurement:
    """For a backend that keeps nothing: a subscriber listens while the messages go out."""
    with broker.subscribe(topic, prefetch=prefetch) as subscription:
        result: list[int] = []
        finished = threading.Event()

        def listen() -> None:
            result.append(_drain(broker, subscription, step, count, prefetch, report))
            finished.set()

        started = time.perf_counter()
        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        for start in range(0, count, batch):
            broker.publish_many(topic, [body] * min(batch, count - start))
        finished.wait(30)
        elapsed = time.perf_counter() - started
        thread.join(10)
    received = result[0] if result else 0
    if received < count:
        raise BrokerError(f"{step}: received {received} of {count} messages")
    return Measurement(step, count, elapsed)


def _latency(broker: Broker, topic: str, body: bytes, count: int, report: Progress) -> Measurement:
    """Ping-pong: publish one message, wait until a blocked consumer has it, repeat."""
    arrived = threading.Event()
    stop = threading.Event()
    times: list[float] = []
    ready = threading.Event()

    def consume() -> None:
        with broker.subscribe(topic) as subscription:
            ready.set()
            while not stop.is_set():
                delivery = subscription.receive(timeout=0.2)
                if delivery is None:
                    continue
                times.append(time.perf_counter())
                arrived.set()
                delivery.ack()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    ready.wait(10)
    latencies = []
    tick = max(count // 50, 1)
    try:
        for n in range(count):
            arrived.clear()
            sent = time.perf_counter()
            broker.publish(topic, body)
            if not arrived.wait(5):
                raise BrokerError(f"latency: message {n} did not arrive within 5 s")
            latencies.append(times[-1] - sent)
            if n % tick == 0:
                report("latency", n, count)
    finally:
        stop.set()
        thread.join(10)
    report("latency", count, count)
    return Measurement.of_latencies(latencies)
