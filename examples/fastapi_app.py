"""A FastAPI service that publishes from a request handler and consumes in a
background task, on one asyncio broker opened and closed by the app's lifespan.

    pip install "pybrokerkit[redis]" fastapi uvicorn
    BROKERKIT_URL=redis+stream://localhost:6379/0 uvicorn examples.fastapi_app:app

Without ``BROKERKIT_URL`` it runs on the in-process ``memory://orders`` broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request

import brokerkit.aio

TOPIC = "order.created"
log = logging.getLogger(__name__)


async def send_receipts(broker: brokerkit.aio.AsyncBroker, sent: list[int]) -> None:
    """The background consumer: one email per order, acked once sent."""
    async for delivery in broker.consume(TOPIC, group="email", prefetch=10):
        sent.append(delivery.body["orderId"])  # stands in for sending the email
        await delivery.ack()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with brokerkit.aio.connect(os.environ.get("BROKERKIT_URL", "memory://orders")) as broker:
        app.state.broker = broker
        app.state.sent = []
        consumer = asyncio.create_task(send_receipts(broker, app.state.sent))
        consumer.add_done_callback(_report_failure)  # a crashed consumer is not silent
        yield
        # Cancelling the consumer strands nothing: what it had prefetched goes back
        # to the topic at once, for the next instance of the service. asyncio.wait
        # does not raise the consumer's cancellation (a cancel of the lifespan's own
        # still does, as a suppress(CancelledError) would hide it).
        consumer.cancel()
        await asyncio.wait([consumer])


def _report_failure(consumer: asyncio.Task[None]) -> None:
    if not consumer.cancelled() and consumer.exception() is not None:
        log.error("the receipts consumer stopped", exc_info=consumer.exception())


app = FastAPI(lifespan=lifespan)


@app.post("/orders/{order_id}")
async def place_order(order_id: int, request: Request) -> dict[str, str]:
    message_id = await request.app.state.broker.publish(TOPIC, {"orderId": order_id})
    return {"message_id": message_id}


@app.get("/receipts")
async def receipts(request: Request) -> dict[str, list[int]]:
    return {"sent": sorted(request.app.state.sent)}
