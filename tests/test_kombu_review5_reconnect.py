"""kombu+amqp: threads that share a broker whose server stopped answering give up
together, within the documented bound (two heartbeats + ``reconnect_timeout``, plus a
connection attempt under way), not one full reconnect window after another.

The server is frozen by a proxy in front of the test RabbitMQ (it forwards nothing and
keeps every connection open).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from brokerkit.exceptions import ConnectionFailed
from tests.test_kombu_review5_proxy import Net, net, rabbitmq

__all__ = ["net", "rabbitmq"]

HEARTBEAT, RECONNECT, CONNECT = 1, 3, 1
#: What one call may take on a silent server, documented: two heartbeats, then
#: reconnect_timeout (a connection attempt under way may end up to connect_timeout
#: later).
DOCUMENTED = 2 * HEARTBEAT + RECONNECT + CONNECT
#: Generous: twice that. Serial reconnects took one window more per thread.
BOUND = 2 * DOCUMENTED


def test_publishers_sharing_a_broker_give_up_together_on_a_silent_server(net: Net) -> None:
    broker = net.broker(heartbeat=HEARTBEAT, reconnect_timeout=RECONNECT, connect_timeout=CONNECT)
    broker.publish("frozen", "before")
    outcomes: dict[int, tuple[Any, float]] = {}
    go = threading.Event()

    def publish(number: int) -> None:
        go.wait()
        started = time.monotonic()
        try:
            broker.publish("frozen", number)
            outcomes[number] = ("published", time.monotonic() - started)
        except Exception as exc:
            outcomes[number] = (exc, time.monotonic() - started)

    threads = [threading.Thread(target=publish, args=(n,), daemon=True) for n in range(5)]
    for thread in threads:
        thread.start()
    net.proxy.frozen.set()
    go.set()
    deadline = time.monotonic() + BOUND
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    late = [n for n, thread in enumerate(threads) if thread.is_alive()]
    assert not late, (
        f"publishers {late} were still waiting after {BOUND} s (twice the documented "
        f"{DOCUMENTED} s); those that ended: {outcomes}"
    )
    for number, (outcome, took) in sorted(outcomes.items()):
        assert isinstance(outcome, ConnectionFailed), f"publisher {number}: {outcome!r}"
        assert took < BOUND, f"publisher {number} gave up after {took:.1f} s"
    # A call after the outage ended reconnects (the give-up is not remembered).
    net.proxy.frozen.clear()
    broker.publish("frozen", "after")
