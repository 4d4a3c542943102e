"""Placing orders the synchronous way and the asynchronous way, side by side."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit.demo._services import BACKGROUND, CRITICAL_PATH, Order, Service
from brokerkit.demo._tally import Tally
from brokerkit.worker import Worker

__all__ = ["FlowResult", "run_order_flow"]


@dataclass(frozen=True)
class FlowResult:
    """What the customer waited for each order, both ways, and what the consumers saw.

    :ivar sync_ms: the response time of each order placed synchronously.
    :ivar async_ms: the response time of each order placed asynchronously.
    :ivar background_s: seconds from the first asynchronous order until every
        consumer had handled every order.
    :ivar seen: for each background service, the distinct orders it handled.
    :ivar duplicates: for each background service, orders it handled more than once.
    :ivar fanout: how the order reached every service: ``"groups"`` (one topic, a
        consumer group each), ``"subscribers"`` (one topic, a subscriber each) or
        ``"topics"`` (a topic per service, for a backend without FANOUT).
    """

    orders: int
    sync_ms: tuple[float, ...]
    async_ms: tuple[float, ...]
    background_s: float
    seen: dict[str, int]
    duplicates: dict[str, int]
    fanout: str

    @property
    def complete(self) -> bool:
        """Every background service handled every order exactly once."""
        return all(n == self.orders for n in self.seen.values()) and not any(
            self.duplicates.values()
        )


def slug(service: Service) -> str:
    """The service's name as a group or topic name."""
    return service.name.replace(" ", "-")


def place_order_sync(order: Order, services: Sequence[Service]) -> float:
    """Call every service in turn, as the tightly coupled ``placeOrder`` does;
    return the seconds the customer waited."""
    started = time.perf_counter()
    for service in services:
        service.call(order)
    return time.perf_counter() - started


def run_order_flow(
    broker: Broker,
    orders: Sequence[Order],
    *,
    topic: str = "order.created",
    speed: float = 1.0,
    timeout: float = 60.0,
) -> FlowResult:
    """Place ``orders`` synchronously, then asynchronously through ``broker``.

    :param speed: latency factor of every service (0.1 runs ten times faster).
    :param timeout: the longest to wait for the consumers to catch up.
    """
    critical = [s.scaled(speed) for s in CRITICAL_PATH]
    background = [s.scaled(speed) for s in BACKGROUND]
    sync_ms = tuple(1000 * place_order_sync(o, [*critical, *background]) for o in orders)

    fanout = _fanout_mode(broker)
    tally = Tally()
    worker = Worker(broker, grace=timeout)
    for service in background:
        name = slug(service)
        service_topic = f"{topic}.{name}" if fanout == "topics" else topic
        group = name if fanout == "groups" else None
        worker.handler(service_topic, group=group, name=name)(_handler(service, tally))
    with worker.running():
        async_ms = []
        started = time.perf_counter()
        for order in orders:
            began = time.perf_counter()
            for service in critical:
                service.call(order)
            if fanout == "topics":
                for service in background:
                    broker.publish(f"{topic}.{slug(service)}", order.as_body())
            else:
                broker.publish(topic, order.as_body())
            async_ms.append(1000 * (time.perf_counter() - began))
        expected = {o.order_id for o in orders}
        tally.wait_until(lambda: all(expected <= tally.seen(slug(s)) for s in background), timeout)
        background_s = time.perf_counter() - started
    return FlowResult(
        orders=len(orders),
        sync_ms=sync_ms,
        async_ms=tuple(async_ms),
        background_s=background_s,
        seen={s.name: len(tally.seen(slug(s)) & expected) for s in background},
        duplicates={s.name: tally.duplicates(slug(s)) for s in background},
        fanout=fanout,
    )


def _fanout_mode(broker: Broker) -> str:
    capabilities = broker.capabilities
    if Capability.FANOUT in capabilities and Capability.COMPETING in capabilities:
        return "groups"
    if Capability.FANOUT in capabilities:
        return "subscribers"
    return "topics"


def _handler(service: Service, tally: Tally) -> Callable[[Any], None]:
    name = slug(service)

    def handle(body: Any) -> None:
        order = Order.from_body(body)
        service.call(order)
        tally.record(name, order.order_id)

    return handle
