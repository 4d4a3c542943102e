"""brokerkit for asyncio: the same model, URLs, options, capabilities and errors as
the sync API, with coroutines.

>>> import asyncio, brokerkit.aio
>>> async def main() -> None:
...     async with brokerkit.aio.connect("memory://") as broker:
...         await broker.publish("order.created", {"orderId": 123})
...         async for delivery in broker.consume("order.created", timeout=0):
...             print(delivery.body)
...             await delivery.ack()
>>> asyncio.run(main())
{'orderId': 123}
"""

from __future__ import annotations

from brokerkit._broker_async import AsyncBroker
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._subscription_async import AsyncSubscription
from brokerkit.aio._bridge import LoopBridgeBroker, bridged
from brokerkit.aio._connect import Connecting, connect
from brokerkit.aio._threaded import ThreadedAsyncBroker, threaded
from brokerkit.worker._worker_async import AsyncWorker as Worker

__all__ = [
    "AsyncBroker",
    "AsyncDelivery",
    "AsyncSubscription",
    "Connecting",
    "LoopBridgeBroker",
    "ThreadedAsyncBroker",
    "Worker",
    "bridged",
    "connect",
    "threaded",
]
