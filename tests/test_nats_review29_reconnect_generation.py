"""NATS: the connection a pull goes out on is the one nats-py has, though it has not
told of it yet (review 29).

nats-py marks a new connection connected once the server answered its first PING, and
calls its ``reconnected_cb`` a round trip later. What is sent in between goes out on
the new connection: the client's generation (by which a pull knows whether it was
lost with the connection, and a lease which connection it came on) must already be
the new connection's then, and not move again when nats-py tells of it; else a pull
sent in between gives up as lost while its answer comes, and what it leased is handed
back, an attempt counted that no handler saw
(tests/test_harness_review29_nats_reconnect_window.py shows that through a slow link).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.nats_server import nats, nats_address
from tests.test_nats_review5_late_settle import CutProxy, disconnected
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture


def test_the_generation_is_the_new_connections_before_nats_py_tells_of_it(
    nats: Callable[..., Any], nats_url: str
) -> None:
    proxy = CutProxy(nats_address(nats_url))
    try:
        broker = nats(f"nats://127.0.0.1:{proxy.port}")
        broker.publish("t", 1)  # (connected)
        client = broker.inner._client
        nc = client._nc
        told = nc._reconnected_cb
        # The generation as nats-py tells of the reconnection, and just after; whether
        # it was marked connected when it told.
        seen: list[tuple[int, int, bool]] = []

        async def telling() -> None:
            connected, before = nc.is_connected, client.generation
            await told()
            seen.append((before, client.generation, connected))

        nc._reconnected_cb = telling
        first = client.generation
        proxy.cut()
        wait_until(lambda: disconnected(broker), "the client seeing the cut", within=5)
        proxy.restore()
        wait_until(lambda: seen, "nats-py telling of the reconnection", within=10)
        before, after, connected = seen[0]
        assert connected, "nats-py told of the reconnection before it marked it connected"
        assert before > first, "the generation did not move with the new connection"
        assert after == before, (
            f"the generation moved from {before} to {after} as nats-py told of a connection "
            "that was in use already"
        )
        assert broker.inspect("t").length == 1  # (the connection works)
    finally:
        proxy.close()
