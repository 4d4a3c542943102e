"""The simulated services of the order flow, each with a realistic latency."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BACKGROUND",
    "CRITICAL_PATH",
    "Order",
    "Service",
    "ServiceFailure",
    "make_orders",
]


class ServiceFailure(Exception):
    """A simulated service failed to handle an order (the demo's own, never raised
    by brokerkit)."""


@dataclass(frozen=True)
class Order:
    """One customer order, as it travels in ``order.created``."""

    order_id: int
    user_id: int
    amount_cents: int

    def as_body(self) -> dict[str, int]:
        """The message body: the fields the article's example publishes."""
        return {"orderId": self.order_id, "userId": self.user_id, "amountCents": self.amount_cents}

    @classmethod
    def from_body(cls, body: Any) -> Order:
        """The order a message body carries (the inverse of :meth:`as_body`)."""
        return cls(int(body["orderId"]), int(body["userId"]), int(body["amountCents"]))


def make_orders(count: int, *, first_id: int = 1001, seed: int = 7) -> list[Order]:
    """``count`` orders with consecutive ids and reproducible users and amounts."""
    rng = random.Random(seed)
    return [
        Order(first_id + n, rng.randrange(100, 999), rng.randrange(500, 25_000))
        for n in range(count)
    ]


@dataclass
class Service:
    """A remote service that takes ``latency_ms`` (plus or minus ``jitter``) per call.

    :ivar name: what the service does, as shown in the demo.
    :ivar latency_ms: the typical time one call takes.
    :ivar jitter: the fraction by which a call's latency varies (0.2: plus or minus 20 %).
    """

    name: str
    latency_ms: float
    jitter: float = 0.2
    _rng: random.Random = field(default_factory=lambda: random.Random(11), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def scaled(self, factor: float) -> Service:
        """The same service, ``factor`` times as slow (0.1: ten times faster)."""
        return Service(self.name, self.latency_ms * factor, self.jitter)

    def call(self, order: Order) -> float:
        """Handle ``order``; return the seconds it took."""
        with self._lock:
            spread = self._rng.uniform(-self.jitter, self.jitter)
        seconds = max(self.latency_ms * (1 + spread), 0.0) / 1000
        time.sleep(seconds)
        return seconds


#: Inventory check, card payment and the order record: the customer waits for these.
CRITICAL_PATH: tuple[Service, ...] = (
    Service("inventory", 25),
    Service("payment", 90),
    Service("order record", 15),
)
#: Work the customer need not wait for: in the asynchronous flow, consumer groups.
BACKGROUND: tuple[Service, ...] = (
    Service("sms", 120),
    Service("email", 180),
    Service("analytics", 35),
    Service("audit", 10),
)
