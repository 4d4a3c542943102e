"""Workers: decorated handlers that a worker runs, with bounded concurrency, retry
policies, typed bodies and a draining shutdown.

>>> import brokerkit
>>> broker = brokerkit.connect("memory://")
>>> worker = brokerkit.Worker(broker)
>>> @worker.handler("order.created", group="email", concurrency=4)
... def send_receipt(order: dict) -> None:
...     print("receipt for", order["orderId"])

``worker.run()`` then runs it until SIGTERM or SIGINT; :class:`brokerkit.aio.Worker`
is the asyncio twin (imported from :mod:`brokerkit.aio`, so that ``import brokerkit``
stays free of asyncio). See ``docs/workers.md``.
"""

from __future__ import annotations

from brokerkit.worker._handler import HandlerSpec
from brokerkit.worker._retry import Exponential, Fixed, Immediate, RetryPolicy
from brokerkit.worker._stats import StatsSnapshot
from brokerkit.worker._typed import InvalidBody
from brokerkit.worker._worker import DEFAULT_GRACE, Worker

__all__ = [
    "DEFAULT_GRACE",
    "Exponential",
    "Fixed",
    "HandlerSpec",
    "Immediate",
    "InvalidBody",
    "RetryPolicy",
    "StatsSnapshot",
    "Worker",
]
