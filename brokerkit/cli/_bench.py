"""Throughput and latency of one brokerkit URL: the measurements behind
``brokerkit bench`` and the brokerkit rows of ``benchmarks/``.

:class:`BrokerBench` keeps one broker open and measures one *round* of one step
at a time, so that the benchmark suite can alternate brokerkit's rounds with raw
redis-py's; :func:`bench_url` is the quick look: each step once.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit._plugins import connect
from brokerkit._subscription import Subscription
from brokerkit.exceptions import BrokerError, ConnectionFailed

__all__ = [
    "STEPS",
    "BrokerBench",
    "Measurement",
    "Progress",
    "Workload",
    "bench_url",
    "percentile",
    "remove_made",
]

#: ``(step, done, total)``: called as a step advances, to draw a progress bar.
Progress = Callable[[str, int, int], None]

#: Every step, in the order they run.
STEPS = ("publish", "publish_many", "consume_ack_p1", "consume_ack_p100", "latency")


@dataclass(frozen=True)
class Measurement:
    """One measured round of one step.

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


@dataclass(frozen=True)
class Workload:
    """What one round of a step does: ``count`` messages of ``size`` bytes,
    published in batches of ``batch`` (publish_many and the consume prefill),
    or ``latency_count`` ping-pongs."""

    count: int = 5000
    size: int = 100
    batch: int = 500
    latency_count: int = 500

    def __post_init__(self) -> None:
        for name in ("count", "batch", "latency_count"):
            if getattr(self, name) < 1:
                raise BrokerError(f"bench {name} must be 1 or more, got {getattr(self, name)}")
        if self.size < 0:
            raise BrokerError(f"bench size must be 0 or more bytes, got {self.size}")

    @property
    def body(self) -> bytes:
        """The body every message carries."""
        return b"x" * self.size

    def batches(self) -> list[int]:
        """The sizes of the batches that make up ``count`` messages."""
        return [min(self.batch, self.count - start) for start in range(0, self.count, self.batch)]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile of ``values``, nearest rank."""
    ordered = sorted(values)
    index = min(max(math.ceil(fraction * len(ordered)) - 1, 0), len(ordered) - 1)
    return ordered[index]


def _nothing(step: str, done: int, total: int) -> None:
    pass


def check_steps(steps: Sequence[str]) -> None:
    """:raises BrokerError: a step is not one of :data:`STEPS`."""
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise BrokerError(f"unknown bench step {sorted(unknown)}; the steps are {', '.join(STEPS)}")


class BrokerBench:
    """One broker, open for any number of rounds of any step.

    Every round works on a fresh topic, purged afterwards. The consume steps
    prefill the topic before the clock starts; consumers with prefetch N ack in
    batches of up to N (what a fetch returned), as raw redis-py's consumers do.
    """

    def __init__(self, url: str, workload: Workload) -> None:
        self.workload = workload
        self.broker = connect(url)
        self._run = secrets.token_hex(4)
        self._rounds = 0
        self._topics: list[str] = []
        #: The topic of a round that ended before its purge (an error, Ctrl-C).
        self._unpurged: str | None = None
        #: Once closed, what the rounds made on the broker and left there (the backend
        #: offering no way to delete it, or the deletion failing): one line each,
        #: naming it (and why).
        self.left: list[str] = []

    def __enter__(self) -> BrokerBench:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close(reachable=not isinstance(error, ConnectionFailed))

    def close(self, *, reachable: bool = True) -> None:
        """Delete what the rounds declared on the broker where the backend offers a
        way (see :func:`remove_made`, which lists the rest in :attr:`left`), and close
        it; the topic of a round cut short is purged first. With ``reachable`` false
        (the connection failed) nothing more is tried: the topics the rounds used are
        named in :attr:`left` instead."""
        try:
            if self.broker.closed or not self._topics:
                pass
            elif reachable:
                if self._unpurged is not None and Capability.PERSISTENT in self.broker.capabilities:
                    with contextlib.suppress(Exception):  # (a stream kept is named then)
                        self.broker.purge(self._unpurged)
                self.left = remove_made(self.broker, self._topics)
            else:
                self.left = [
                    "(the connection failed: what the run declared for its topics "
                    f"{', '.join(self._topics)} was neither removed nor listed)"
                ]
        finally:
            self.broker.close()

    def run(self, step: str, progress: Progress | None = None) -> Measurement:
        """Measure one round of ``step``.

        :raises BrokerError: the broker cannot be reached, or the round lost messages.
        """
        check_steps([step])
        report = progress or _nothing
        self._rounds += 1
        topic = f"bench-{self._run}-{step}-{self._rounds}"
        self._topics.append(topic)
        self._unpurged = topic
        broker, work = self.broker, self.workload
        if step == "publish":
            result = _publish(broker, topic, work, report)
        elif step == "publish_many":
            result = _publish_many(broker, topic, work, report)
        elif step.startswith("consume_ack_p"):
            prefetch = int(step.removeprefix("consume_ack_p"))
            result = _consume(broker, topic, step, work, prefetch, report)
        else:
            result = _latency(broker, topic, work, report)
        if Capability.PERSISTENT in broker.capabilities:
            broker.purge(topic)
        self._unpurged = None
        return result


def bench_url(
    url: str,
    *,
    count: int = 5000,
    size: int = 100,
    batch: int = 500,
    latency_count: int = 500,
    steps: Sequence[str] = STEPS,
    progress: Progress | None = None,
    left: list[str] | None = None,
) -> list[Measurement]:
    """Measure each of ``steps`` once on ``url`` with ``count`` messages of ``size``
    bytes (the quick look; ``benchmarks/`` alternates rounds with raw redis-py).

    :param left: extended, even after an error, with what the run made on the broker
        and could not delete (see :attr:`BrokerBench.left`).
    :raises BrokerError: the URL cannot be reached, a step is unknown, or a step
        lost messages.
    """
    check_steps(steps)
    workload = Workload(count=count, size=size, batch=batch, latency_count=latency_count)
    bench = BrokerBench(url, workload)
    try:
        with bench:
            return [bench.run(step, progress) for step in steps]
    finally:
        if left is not None:
            left.extend(bench.left)


def remove_made(broker: Broker, topics: Sequence[str]) -> list[str]:
    """Delete what ``broker`` made on the server for ``topics`` (a bench's or the demo's
    own broker, which made nothing else), where the backend offers a way; return a line
    naming each thing left. Never raises: what could not be removed or listed is named
    in a line, with why.

    A backend offers a way through two members of its concrete broker (they are not
    part of the :class:`~brokerkit.Broker` API): ``declared``, the names of what that
    broker itself declared or made and outlives it, and ``delete(*declared)``, which
    deletes only those. kombu (``kombu+amqp``, ``kombu+redis``, ``kombu+memory``)
    names its exchanges and queues; ``nats`` the durable consumers it made, and its
    stream if it made it, deleted only once nothing else is in it. A backend with
    ``declared`` but no ``delete`` has what it declared listed. Redis keys are removed
    with the bench's own prefix instead (see :mod:`brokerkit.cli._scratch`)."""
    try:
        declared = getattr(broker, "declared", None)
        if declared is None:
            return []
        delete = getattr(broker, "delete", None)
        # What the names are: ``exchanges`` hold exchanges (kombu's virtual transports
        # give a plain tuple: its exchanges, its queues).
        fields = getattr(declared, "_fields", ("exchanges", "queues"))
        kinds = [field.removesuffix("s") for field in fields]
        left: list[str] = []
        unreachable: ConnectionFailed | None = None
        if callable(delete):
            # All in one call, in the order the backend needs (a topic's queues before
            # its exchange, before its dead-letter topic's); then what is left one a
            # call, for why each was kept.
            try:
                delete(*declared)
            except ConnectionFailed as exc:
                unreachable = exc
            except Exception:
                pass  # each one left is tried again below, for its why
            declared = broker.declared  # type: ignore[attr-defined]
        # The second names first (queues, consumers): they live in the first (exchanges,
        # streams).
        for index in reversed(range(len(kinds))):
            for name in sorted(declared[index]):
                line = _line(kinds[index], name)
                if not callable(delete) or unreachable is not None:
                    left.append(line if unreachable is None else f"{line} ({unreachable})")
                    continue
                only = [frozenset[Any]()] * len(kinds)
                only[index] = frozenset([name])
                try:
                    delete(*only)
                except ConnectionFailed as exc:  # the rest would each wait as long
                    unreachable = exc
                    left.append(f"{line} ({exc})")
                except BrokerError as exc:
                    left.append(f"{line} ({exc})")
                except Exception as exc:
                    left.append(f"{line} ({type(exc).__name__}: {exc})")
        return left
    except Exception as exc:  # reported, never raised: the measurements stand
        return [
            f"(could not remove or list what the run declared for its topics "
            f"{', '.join(topics)}: {type(exc).__name__}: {exc})"
        ]


def _line(kind: str, name: Any) -> str:
    """``queue NAME``; a NATS consumer is ``(stream, name)``."""
    if isinstance(name, tuple):
        stream, name = name
        return f"{kind} {name} of the stream {stream}"
    return f"{kind} {name}"


def _publish(broker: Broker, topic: str, work: Workload, report: Progress) -> Measurement:
    count, body = work.count, work.body
    publish = broker.publish
    tick = max(count // 50, 1)
    started = time.perf_counter()
    done = 0
    while done < count:
        n = min(tick, count - done)
        for _ in range(n):
            publish(topic, body)
        done += n
        report("publish", done, count)
    return Measurement("publish", count, time.perf_counter() - started)


def _publish_many(broker: Broker, topic: str, work: Workload, report: Progress) -> Measurement:
    batches = [[work.body] * n for n in work.batches()]
    started = time.perf_counter()
    done = 0
    for bodies in batches:
        broker.publish_many(topic, bodies)
        done += len(bodies)
        report("publish_many", done, work.count)
    return Measurement("publish_many", work.count, time.perf_counter() - started)


def _consume(
    broker: Broker, topic: str, step: str, work: Workload, prefetch: int, report: Progress
) -> Measurement:
    if Capability.PERSISTENT not in broker.capabilities:
        return _receive_while_publishing(broker, topic, step, work, prefetch, report)
    with broker.subscribe(topic, prefetch=prefetch) as subscription:
        for n in work.batches():
            broker.publish_many(topic, [work.body] * n)
        started = time.perf_counter()
        received, size = _drain(broker, subscription, step, work.count, prefetch, report)
        elapsed = time.perf_counter() - started
    if received < work.count:
        raise BrokerError(f"{step}: received {received} of {work.count} messages")
    if size != received * len(work.body):
        raise BrokerError(
            f"{step}: received {size} payload bytes, expected {received * len(work.body)}"
        )
    return Measurement(step, work.count, elapsed)


def _drain(
    broker: Broker,
    subscription: Subscription,
    step: str,
    count: int,
    prefetch: int,
    report: Progress,
) -> tuple[int, int]:
    """Receive and ack ``count`` deliveries: one by one, or each fetched batch
    (up to ``prefetch``) in one ack. Returns how many were received and the bytes of
    their payloads: every delivery's payload is read, as a consumer reads what it
    receives (a raw client holds every body in its reply), so that work a backend
    leaves until a delivery is read is measured too."""
    tick = max(count // 50, 1)
    received = size = 0
    pending: list[Delivery] = []
    while received < count:
        delivery = subscription.receive(timeout=5.0)
        if delivery is None:
            break
        received += 1
        size += len(delivery.payload)
        pending.append(delivery)
        if len(pending) >= prefetch or subscription.buffered == 0:
            broker.ack(*pending)
            pending.clear()
        if received % tick == 0:
            report(step, received, count)
    if pending:
        broker.ack(*pending)
    report(step, received, count)
    return received, size


def _receive_while_publishing(
    broker: Broker, topic: str, step: str, work: Workload, prefetch: int, report: Progress
) -> Measurement:
    """For a backend that keeps nothing: a subscriber listens while the messages go out."""
    batches = [[work.body] * n for n in work.batches()]
    with broker.subscribe(topic, prefetch=prefetch) as subscription:
        result: list[tuple[int, int]] = []
        finished = threading.Event()

        def listen() -> None:
            try:
                result.append(_drain(broker, subscription, step, work.count, prefetch, report))
            finally:
                finished.set()

        started = time.perf_counter()
        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        for bodies in batches:
            broker.publish_many(topic, bodies)
        finished.wait(30)
        elapsed = time.perf_counter() - started
        thread.join(10)
    received, size = result[0] if result else (0, 0)
    if received < work.count:
        raise BrokerError(f"{step}: received {received} of {work.count} messages")
    if size != received * len(work.body):
        raise BrokerError(
            f"{step}: received {size} payload bytes, expected {received * len(work.body)}"
        )
    return Measurement(step, work.count, elapsed)


def _latency(broker: Broker, topic: str, work: Workload, report: Progress) -> Measurement:
    """Ping-pong: publish one message, wait until a blocked consumer has it, repeat.

    The arrival is stamped when ``receive`` returns, before the ack (as raw
    redis-py's consumer stamps before its XACK/LREM); the first ping only makes
    sure the consumer is waiting and is not counted.
    """
    arrived = threading.Event()
    stop = threading.Event()
    ready = threading.Event()
    stamps: list[float] = []
    count, body = work.latency_count, work.body

    def consume() -> None:
        with broker.subscribe(topic) as subscription:
            ready.set()
            while not stop.is_set():
                delivery = subscription.receive(timeout=0.2)
                if delivery is None:
                    continue
                stamps.append(time.perf_counter())
                arrived.set()
                delivery.ack()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise BrokerError("latency: the consumer did not subscribe within 10 s")
    latencies = []
    tick = max(count // 50, 1)
    try:
        for n in range(count + 1):
            arrived.clear()
            sent = time.perf_counter()
            broker.publish(topic, body)
            if not arrived.wait(5):
                raise BrokerError(f"latency: message {n} did not arrive within 5 s")
            if n:
                latencies.append(stamps[-1] - sent)
            if n % tick == 0:
                report("latency", n, count)
    finally:
        stop.set()
        thread.join(10)
    report("latency", count, count)
    return Measurement.of_latencies(latencies)
