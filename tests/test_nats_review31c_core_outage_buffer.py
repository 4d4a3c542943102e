"""nats+core: what nats-py held unwritten as the connection dropped is sent on the
reconnection, a subscribe meanwhile or not (review 31c), against a server of the
test's own, killed and restarted on its port.

A subscribe wrote nats-py's buffer (a PUB left by a publish the outage interrupted) to
the lost connection's transport and emptied it: the PUB went nowhere, where nats-py
would have sent it on the reconnection. brokerkit writes the buffer out only while the
connection is up.
"""

from __future__ import annotations

import asyncio
import uuid

import brokerkit
import brokerkit.aio
from tests.nats_server import NatsServer
from tests.test_nats_review31c_core_outage_subscribe import (
    GUARD,
    _core,
    _subscribed,
    _until,
    server,
)

__all__ = ["server"]  # a fixture


def test_a_publish_nats_py_held_in_an_outage_is_sent_after_a_subscribe_meanwhile(
    server: NatsServer,
) -> None:
    prefix = f"r31c{uuid.uuid4().hex[:10]}"

    async def run() -> None:
        broker = await brokerkit.aio.connect(_core(server, prefix))
        try:
            left = await broker.subscribe("left")  # (nats-py subscribes again on return)
            nc = broker._client._nc  # type: ignore[attr-defined]
            server.kill()
            await _until(lambda: not nc.is_connected, "disconnected")
            # What a publish the outage interrupted leaves in nats-py's buffer: it is
            # sent on the reconnection.
            await nc.publish(f"{prefix}.left", b"left over")
            subscribing = asyncio.ensure_future(broker.subscribe("during"))
            await _until(lambda: _subscribed(nc, f"{prefix}.during"), "subscribing")
            await asyncio.to_thread(server.start)  # (it runs a loop of its own)
            await asyncio.wait_for(subscribing, GUARD)
            delivery = await left.receive(timeout=GUARD)
            assert delivery is not None and delivery.body == b"left over"  # (raw: no Bk-Meta)
        finally:
            await broker.close()

    asyncio.run(run())
