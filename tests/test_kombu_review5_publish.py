"""kombu+amqp: a publish to a server that stopped answering gives up after two
heartbeats and ``reconnect_timeout`` (as documented), not after waiting out the
socket timeout a second time for the close of its channel on the silent connection.

The server is frozen by a proxy in front of the test RabbitMQ (it forwards nothing and
keeps every connection open).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from brokerkit.exceptions import ConnectionFailed
from tests.test_kombu_review5_proxy import Net, net, rabbitmq

__all__ = ["net", "rabbitmq"]

#: The socket timeout (two heartbeats, 6 s) dominates; the rest is small.
HEARTBEAT, RECONNECT, CONNECT = 3, 0.5, 0.5
DOCUMENTED = 2 * HEARTBEAT + RECONNECT + CONNECT
#: Generous, yet short of a second socket timeout (which took 13 s and more).
BOUND = 1.5 * DOCUMENTED


def test_a_publish_to_a_silent_server_waits_one_socket_timeout(net: Net) -> None:
    broker = net.broker(heartbeat=HEARTBEAT, reconnect_timeout=RECONNECT, connect_timeout=CONNECT)
    broker.publish("frozen", "before")
    net.proxy.frozen.set()
    outcome: list[Any] = []

    def publish() -> None:
        started = time.monotonic()
        try:
            broker.publish("frozen", "during")
            outcome.append(("published", time.monotonic() - started))
        except Exception as exc:
            outcome.append((exc, time.monotonic() - started))

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    thread.join(BOUND)
    if thread.is_alive():
        pytest.fail(
            f"the publish was still waiting after {BOUND} s (documented: two heartbeats "
            f"+ reconnect_timeout + connect_timeout = {DOCUMENTED} s)"
        )
    error, took = outcome[0]
    assert isinstance(error, ConnectionFailed), error
    assert took < BOUND
