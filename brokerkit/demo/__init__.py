"""The order-flow demo of ``brokerkit demo``: the article's e-commerce scenario.

Three scenes, each a function that returns what it measured and reconciled, so
that tests and other programs can run them with small numbers:

- :func:`run_order_flow`: an order placed synchronously (every service in turn)
  and asynchronously (the critical path, then ``publish("order.created")``).
- :func:`run_peak_shaving`: a flash sale bursts orders faster than the consumers
  go; the queue absorbs it; every order is processed once.
- :func:`run_failing_consumer`: an SMS service failing on one order in ten:
  nack, redelivery, and the dead-letter topic past ``max_deliveries``.

:func:`run_demo` runs all three and draws them with rich (the ``cli`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brokerkit.demo._orderflow import FlowResult, run_order_flow
from brokerkit.demo._peak import PeakResult, Sample, run_peak_shaving
from brokerkit.demo._retry import DeadLetter, Event, RetryResult, run_failing_consumer
from brokerkit.demo._services import BACKGROUND, CRITICAL_PATH, Order, Service, make_orders

if TYPE_CHECKING:
    from brokerkit.demo._runner import DemoConfig, DemoReport

__all__ = [
    "BACKGROUND",
    "CRITICAL_PATH",
    "DeadLetter",
    "DemoConfig",
    "DemoReport",
    "Event",
    "FlowResult",
    "Order",
    "PeakResult",
    "RetryResult",
    "Sample",
    "Service",
    "make_orders",
    "run_demo",
    "run_failing_consumer",
    "run_order_flow",
    "run_peak_shaving",
]


def __getattr__(name: str) -> Any:
    # The runner draws with rich; import it only when asked, so the scenes work without it.
    if name in ("DemoConfig", "DemoReport", "run_demo"):
        from brokerkit.demo import _runner

        return getattr(_runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
