"""NATS, sync API: a lease-loss report that had not reached the hook when the close
stopped waiting is never told to the hook after the close returned (review 28).

The reporter's thread decided whether a report may start (the close had not stopped
waiting) before the report's warning was logged, and called the hook after: a close
that stopped waiting in between (a log handler that is slow, a thread descheduled)
returned, and the hook was told of the leases after it. Now the decision is made
right before the hook is called, under the lock the close's end takes.

The gap is held open here by a logging handler of the test's own, which blocks on the
report's warning until the close has returned: no sleep decides the order. The lease
is lost for real, as in tests/test_nats_review28_report_after_close.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brokerkit
from brokerkit.backends.nats import sync
from tests.conftest import registered
from tests.nats_server import nats
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


class Told:
    """A lease-loss hook noting, for each call, whether the broker's close had returned
    when it started."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.calls: list[tuple[list[str], bool]] = []

    @brokerkit.hookimpl
    def brokerkit_on_lease_lost(self, deliveries: Any) -> None:
        self.calls.append(([d.body for d in deliveries], self.closed.is_set()))


class HeldWarning(logging.Handler):
    """Blocks the reporter's thread on the report's warning (logged before the hook is
    called) until released."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.entered = threading.Event()
        self.let_go = threading.Event()
        self.thread: threading.Thread | None = None

    def createLock(self) -> None:  # (logging's name)
        self.lock = None  # (other threads log through it while one is held here)

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName == "brokerkit-lease-lost" and "StaleDelivery" in record.getMessage():
            self.thread = threading.current_thread()
            self.entered.set()
            self.let_go.wait(GUARD)


@pytest.fixture
def told() -> Iterator[Told]:
    yield from registered(Told())


@pytest.fixture
def held() -> Iterator[HeldWarning]:
    handler = HeldWarning()
    logger = logging.getLogger("brokerkit.nats")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        handler.let_go.set()
        logger.removeHandler(handler)


def test_a_report_not_yet_at_the_hook_when_the_close_stops_waiting_is_not_told(
    nats: Callable[..., Any],
    told: Told,
    held: HeldWarning,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The close's wait for the reporter is bounded (2 s): it runs out here while the
    # report's warning is held, however long it is.
    monkeypatch.setattr(sync, "CLOSE_WAIT", 0.1)
    broker = nats(visibility_timeout=1)
    broker.publish("jobs", "lost")
    delivery = broker.subscribe("jobs").receive(timeout=GUARD)
    assert delivery is not None

    async def block() -> None:
        time.sleep(1.5)  # the bridge's event loop blocked past the lease (1 s)

    broker._run(block())
    assert held.entered.wait(GUARD), "the lost lease was not reported"
    with caplog.at_level(logging.WARNING, logger="brokerkit.nats"):
        broker.close()  # stops waiting for the reporter: its warning is held
        told.closed.set()
        held.let_go.set()
        thread = held.thread
        assert thread is not None
        wait_until(lambda: not thread.is_alive(), "the reporter's thread to end", GUARD)
    assert told.calls == [], "the hook was told of a report after the close returned"
    assert any(
        "not reported" in record.getMessage() and "closed" in record.getMessage()
        for record in caplog.records
    ), "the lease left unreported was not logged"
