"""nats+core: a subscribe undone while the connection is down (cancelled, interrupted,
or failed) leaves no interest on the server once it reconnects (review 31d).

nats-py (2.16) queues the SUB while it reconnects, and an unsubscribe then removes the
subscription from the client but sends no UNSUB: the queued SUB went out as it
reconnected, and the server kept sending every matching message to a subscription
nobody knew. Against a server of the test's own, killed and restarted on its port; the
interest is read from the server itself: a request to the subject finds no responder
(with a stray subscription it would wait for an answer until its timeout)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import nats
import pytest

import brokerkit.aio
from tests.test_nats_review31c_core_outage_subscribe import (
    GUARD,
    _core,
    _subscribed,
    _until,
    server,
)

__all__ = ["server"]  # a fixture


def test_a_subscribe_cancelled_during_an_outage_leaves_no_interest(server: Any) -> None:
    prefix = f"r31d{uuid.uuid4().hex[:10]}"
    subject = f"{prefix}.news"

    async def run() -> None:
        broker = await brokerkit.aio.connect(_core(server, prefix))
        try:
            await broker.publish("warm", "up")  # (the connection made)
            nc = broker._client._nc  # type: ignore[attr-defined]
            server.kill()
            await _until(lambda: not nc.is_connected, "disconnected")
            subscribing = asyncio.ensure_future(broker.subscribe("news"))
            await _until(lambda: _subscribed(nc, subject), "subscribing")
            subscribing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await subscribing
            await asyncio.to_thread(server.start)
            await _until(lambda: nc.is_connected, "reconnected")
            await nc.flush()  # what it queued while down is on the server now
            asker = await nats.connect(server.url)
            try:
                with pytest.raises(nats.errors.NoRespondersError):
                    await asker.request(subject, b"anyone?", timeout=GUARD)
            finally:
                await asker.close()
        finally:
            await broker.close()

    asyncio.run(run())
