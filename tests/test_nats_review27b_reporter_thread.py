"""NATS, sync API: the lease-loss hook is told in one thread of the broker's, one
report after another, and that thread ends with the close (review 27b).

The renewals told the hook of each round's lost leases in a new thread, never
joined: a hook that blocked (an HTTP call that hangs) left one thread per round
behind (40 rounds, 40 threads), the hook of one broker ran in several threads at
once, and went on after the broker's close. Now one thread of the broker's reports,
in order, and the close waits for it to end (a bounded wait).

The leases are lost for real: the bridge's event loop is blocked past them, as in
tests/test_nats_review27_lease_lost_hook_thread.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brokerkit
from tests.conftest import registered
from tests.nats_server import nats
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


class Blocking:
    """A lease-loss hook that blocks until released, noting where and how often it
    runs at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []
        self.told: list[str] = []
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    @brokerkit.hookimpl
    def brokerkit_on_lease_lost(self, deliveries: Any) -> None:
        with self._lock:
            self.threads.append(threading.current_thread())
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.release.wait(GUARD)
            self.told.extend(d.body for d in deliveries)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def blocking() -> Iterator[Blocking]:
    hook = Blocking()
    try:
        yield from registered(hook)
    finally:
        hook.release.set()


def lose_one(broker: Any, topic: str) -> brokerkit.Delivery:
    """Receive one message of ``topic`` and lose its lease: the bridge's event loop
    blocked past it (the renewals cannot run). The delivery is returned for the test
    to hold: one the application let go of is renewed no more, and not reported
    lost (nothing holds it to be told of)."""
    broker.publish(topic, topic)
    held = broker.subscribe(topic).receive(timeout=GUARD)
    assert held is not None

    async def block() -> None:
        time.sleep(1.5)  # the bridge's event loop blocked past the lease (1 s)

    broker._run(block())
    return held


def test_lost_leases_are_reported_in_one_thread_in_turn(
    nats: Callable[..., Any], blocking: Blocking
) -> None:
    broker = nats(visibility_timeout=1)
    handed: list[object] = []
    report = broker._nats._report_lost

    def spy(lost: Any) -> None:  # (what the renewals hand the reporter: counted)
        handed.append(lost)
        report(lost)

    broker._nats._report_lost = spy
    held = [lose_one(broker, "first")]
    wait_until(lambda: blocking.running, "the hook told of the first", within=GUARD)
    held.append(lose_one(broker, "second"))
    wait_until(lambda: len(handed) >= 2, "the second report", within=GUARD)
    blocking.release.set()
    wait_until(lambda: len(blocking.told) >= 2, "the hook told of both", within=GUARD)
    assert blocking.told == ["first", "second"]
    assert blocking.most == 1, "the hook ran in two threads at once"
    assert len(set(blocking.threads)) == 1, "a thread per report"
    broker.close()
    assert not blocking.threads[0].is_alive(), "the reporter's thread outlived the close"
