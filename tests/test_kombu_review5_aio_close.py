"""kombu+amqp under brokerkit.aio: closing the broker while its server stopped
answering ends in bounded time (as the sync close does: the calls stuck on the silent
server are ended first, and RabbitMQ's answer to each connection's close is awaited
2 s at most), and a receive under way ends with BrokerClosed, as documented, not
with ConnectionFailed once a reconnect gives up.

The server is frozen by a proxy in front of the test RabbitMQ (it forwards nothing and
keeps every connection open).
"""

from __future__ import annotations

import asyncio
import time

import brokerkit.aio
from brokerkit.exceptions import BrokerClosed
from tests.test_kombu_review5_proxy import Net, net, rabbitmq

__all__ = ["net", "rabbitmq"]

#: Long enough that a close which waits for the reconnect cannot pass.
OPTIONS = {"heartbeat": 2, "reconnect_timeout": 20, "connect_timeout": 1}
#: Documented for close: a thread stuck on the silent server is let go of after 2 s,
#: then each of the two connections' close waits 2 s at most.
DOCUMENTED = 2 + 2 * 2
#: Generous: twice that.
BOUND = 2 * DOCUMENTED


def test_an_asyncio_close_on_a_silent_server_is_bounded(net: Net) -> None:
    async def main() -> tuple[object, float]:
        broker = await brokerkit.aio.connect(net.through_url, prefix=net.prefix, **OPTIONS)
        net.made.append(broker.sync)  # (what it declared is deleted at the end)
        subscription = await broker.subscribe("frozen")
        net.proxy.frozen.set()

        async def receive() -> object:
            try:
                return await subscription.receive(timeout=60)
            except Exception as exc:
                return exc

        waiting = asyncio.create_task(receive())
        # Until the silent server is found (two heartbeats) and a reconnect is under way.
        link = broker.sync._reading_link  # type: ignore[attr-defined]
        deadline = time.monotonic() + 3 * OPTIONS["heartbeat"] + 5
        while link._connection.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        started = time.monotonic()
        try:
            await asyncio.wait_for(broker.close(), BOUND)
        except asyncio.TimeoutError:
            return "still closing", time.monotonic() - started
        took = time.monotonic() - started
        return await asyncio.wait_for(waiting, 5), took

    received, took = asyncio.run(main())
    assert received != "still closing", f"the close took more than {BOUND} s"
    assert took < BOUND, f"the close took {took:.1f} s"
    assert isinstance(received, BrokerClosed), (
        f"a receive under way when the broker closes raises BrokerClosed, got {received!r}"
    )
