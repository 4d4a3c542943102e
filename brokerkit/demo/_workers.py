"""Consumer threads and the tally that reconciles what they processed."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from brokerkit._broker import Broker
from brokerkit._delivery import Delivery

__all__ = ["Tally", "Worker", "start_all", "stop_all"]

#: How long a worker blocks for a delivery before it looks at its stop event again.
POLL = 0.05


class Tally:
    """Which orders each consumer handled, and how often: the demo's ground truth."""

    def __init__(self) -> None:
        self._counts: dict[str, collections.Counter[int]] = collections.defaultdict(
            collections.Counter
        )
        self._condition = threading.Condition()
        self.total = 0

    def record(self, who: str, order_id: int) -> None:
        with self._condition:
            self._counts[who][order_id] += 1
            self.total += 1
            self._condition.notify_all()

    def seen(self, who: str) -> set[int]:
        """The distinct orders ``who`` handled."""
        with self._condition:
            return set(self._counts[who])

    def duplicates(self, who: str) -> int:
        """How many times ``who`` handled an order it had handled before."""
        with self._condition:
            return sum(n - 1 for n in self._counts[who].values())

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Block until ``done()`` holds (checked after each record) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(min(left, 0.1))
            return True


class Worker(threading.Thread):
    """One consumer in a thread: subscribes, hands each delivery to ``handle``
    (which settles it), and stops at ``stop``, closing its subscription so that
    whatever it prefetched goes back to the topic.

    :ivar error: what ended the worker, if it was not ``stop``.
    """

    def __init__(
        self,
        broker: Broker,
        topic: str,
        handle: Callable[[Delivery], None],
        stop: threading.Event,
        *,
        group: str | None = None,
        prefetch: int = 1,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name or f"demo-{group or topic}", daemon=True)
        self.broker = broker
        self.topic = topic
        self.group = group
        self.handle = handle
        self.stop = stop
        self.prefetch = prefetch
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            subscription = self.broker.subscribe(
                self.topic, group=self.group, prefetch=self.prefetch
            )
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            with subscription:
                while not self.stop.is_set():
                    delivery = subscription.receive(timeout=POLL)
                    if delivery is not None:
                        self.handle(delivery)
        except BaseException as exc:
            if not self.stop.is_set():
                self.error = exc


def start_all(workers: list[Worker], timeout: float = 10.0) -> None:
    """Start ``workers`` and wait until each is subscribed; re-raise a failure to subscribe."""
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.ready.wait(timeout)
        if worker.error is not None:
            raise worker.error


def stop_all(workers: list[Worker], stop: threading.Event) -> None:
    """Stop ``workers``, wait for them, and re-raise the first error one of them hit."""
    stop.set()
    for worker in workers:
        worker.join(10.0)
    for worker in workers:
        if worker.error is not None:
            raise worker.error
