"""Peak shaving: a flash sale bursts orders faster than the consumers can go; the
queue absorbs the burst and drains it at the consumers' own pace."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from brokerkit._broker import Broker
from brokerkit.demo._services import Order
from brokerkit.demo._tally import Tally
from brokerkit.worker import Worker

__all__ = ["PeakResult", "Sample", "run_peak_shaving"]

#: The name fulfilment workers record their work under in the tally.
_WHO = "fulfilment"


@dataclass(frozen=True)
class Sample:
    """The queue at one moment of the flash sale.

    :ivar t: seconds since the sale opened.
    :ivar published: orders published so far.
    :ivar processed: orders processed (and acked) so far.
    """

    t: float
    published: int
    processed: int

    @property
    def backlog(self) -> int:
        """Orders waiting in the queue (or in a worker's hands)."""
        return max(self.published - self.processed, 0)


@dataclass(frozen=True)
class PeakResult:
    """How the burst went, and the reconciliation at the end.

    :ivar burst_s: seconds the sale took to publish every order.
    :ivar total_s: seconds until the last order was processed (or the wait gave up).
    :ivar samples: the queue over time, every ``sample_every`` seconds.
    :ivar processed: distinct orders processed.
    :ivar duplicates: orders processed more than once.
    :ivar lost: orders published but never processed.
    """

    orders: int
    workers: int
    burst_s: float
    total_s: float
    samples: tuple[Sample, ...]
    processed: int
    duplicates: int
    lost: int

    @property
    def peak_backlog(self) -> int:
        """The deepest the queue got."""
        return max((s.backlog for s in self.samples), default=0)

    @property
    def reconciled(self) -> bool:
        """Every order processed, none lost, none twice."""
        return self.processed == self.orders and self.lost == 0 and self.duplicates == 0


def run_peak_shaving(
    broker: Broker,
    orders: Sequence[Order],
    *,
    topic: str = "order.created",
    workers: int = 3,
    work_ms: float = 5.0,
    burst_rate: float = 2000.0,
    sample_every: float = 0.05,
    on_sample: Callable[[Sample], None] | None = None,
    timeout: float = 60.0,
) -> PeakResult:
    """Publish ``orders`` at ``burst_rate`` per second while ``workers`` competing
    consumers each take ``work_ms`` per order; sample the queue as it rises and drains.

    :param on_sample: called with each sample, from this thread (to draw it live).
    :param timeout: the longest to wait for the backlog to drain.
    """
    tally = Tally()
    worker = Worker(broker, grace=timeout)

    @worker.handler(topic, concurrency=workers, prefetch=0, name="fulfilment")
    def handle(body: dict[str, int]) -> None:
        time.sleep(work_ms / 1000)
        order = Order.from_body(body)
        tally.record(_WHO, order.order_id)

    samples: list[Sample] = []
    published = 0
    started = time.perf_counter()
    next_sample = 0.0

    def sample(now: float) -> None:
        nonlocal next_sample
        if now >= next_sample:
            point = Sample(now, published, tally.total)
            samples.append(point)
            if on_sample is not None:
                on_sample(point)
            next_sample = now + sample_every

    with worker.running():
        bodies = [o.as_body() for o in orders]
        while published < len(bodies):
            now = time.perf_counter() - started
            due = min(len(bodies), max(int(now * burst_rate), published + 1))
            broker.publish_many(topic, bodies[published:due])
            published = due
            sample(now)
            time.sleep(0.005)
        burst_s = time.perf_counter() - started
        deadline = time.monotonic() + timeout
        while tally.total < published and time.monotonic() < deadline:
            tally.wait_until(lambda: tally.total >= published, sample_every / 2)
            sample(time.perf_counter() - started)
        total_s = time.perf_counter() - started
        next_sample = 0.0
        sample(total_s)
    seen = tally.seen(_WHO)
    expected = {o.order_id for o in orders}
    return PeakResult(
        orders=len(orders),
        workers=workers,
        burst_s=burst_s,
        total_s=total_s,
        samples=tuple(samples),
        processed=len(seen & expected),
        duplicates=tally.duplicates(_WHO),
        lost=len(expected - seen),
    )
