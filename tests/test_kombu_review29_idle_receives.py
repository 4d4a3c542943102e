"""kombu+amqp: receives waiting in many threads of one broker (a worker's idle topics,
the asyncio adapter's receives: every subscription of a broker shares its reading
connection) no longer hold up the receive whose message came, nor acks. Each waiting
receive read the socket itself, holding the connection's lock for each 50 ms slice of
its wait, and they took turns: with 20 such threads, a message waited a median of 5 s
to be handed out (16 s at most, a receive(timeout=5) returning 11 s late), and an ack
as long. A waiting receive now watches the socket without the lock.
Real RabbitMQ: topics under the test's own prefix."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tests.kombu_rabbitmq import kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]

#: Threads waiting on empty topics of the same broker.
IDLE = 20
#: Far more than the few milliseconds each takes now, far less than it took before.
BOUND = 5.0


def test_idle_receives_do_not_hold_up_a_busy_one(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    publisher = kombu_broker()
    busy = broker.subscribe("busy")
    idle = [broker.subscribe(f"idle{n}") for n in range(IDLE)]
    stop = threading.Event()
    waiting = threading.Barrier(IDLE + 1)
    errors: list[BaseException] = []

    def wait_on(subscription: Any) -> None:
        try:
            assert subscription.receive(timeout=0.2) is None  # (a consumer from now on)
            waiting.wait(30)
            while not stop.is_set():
                assert subscription.receive(timeout=1) is None
        except BaseException as exc:  # (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=wait_on, args=(s,), daemon=True) for s in idle]
    for thread in threads:
        thread.start()
    try:
        assert busy.receive(timeout=0.2) is None  # (a consumer from now on)
        waiting.wait(30)
        started = time.monotonic()
        for n in range(5):
            publisher.publish("busy", n)
            delivery = busy.receive(timeout=BOUND)
            assert delivery is not None
            assert delivery.body == n
            delivery.ack()
        took = time.monotonic() - started
        empty = time.monotonic()
        assert busy.receive(timeout=0.5) is None
        overran = time.monotonic() - empty - 0.5
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors
    assert took < BOUND, f"5 messages took {took:.1f}s to receive and ack"
    assert overran < BOUND, f"a receive(timeout=0.5) returned {overran:.1f}s late"
