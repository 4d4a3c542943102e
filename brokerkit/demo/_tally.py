"""The tally that reconciles what the demo's handlers processed."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

__all__ = ["Tally"]


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
