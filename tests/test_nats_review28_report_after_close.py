"""NATS, sync API: no lease-loss report starts after the broker's close returned
(review 28).

The close waits for the reporter's thread to tell the hook what it was given, 2 s
at most (docs/backends/nats.md). A hook that blocked longer was then told the rest
after the close had returned: a plugin that tears down with the broker (a metrics
exporter, a tracer) got a report of a broker that no longer exists. Now what is
left when the close stops waiting is not reported to the hook (it is logged): the
hook call under way when the close returns is the last.

The leases are lost for real: the bridge's event loop is blocked past them, as in
tests/test_nats_review27b_reporter_thread.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brokerkit
from tests.conftest import registered
from tests.nats_server import nats
from tests.test_nats_review27b_reporter_thread import lose_one
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


class Blocking:
    """A lease-loss hook that blocks until released, noting for each call whether the
    broker's close had returned when it started."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()
        self.calls: list[tuple[list[str], bool]] = []
        self.thread: threading.Thread | None = None

    @brokerkit.hookimpl
    def brokerkit_on_lease_lost(self, deliveries: Any) -> None:
        self.thread = threading.current_thread()
        self.calls.append(([d.body for d in deliveries], self.closed.is_set()))
        self.release.wait(GUARD)


@pytest.fixture
def blocking() -> Iterator[Blocking]:
    hook = Blocking()
    try:
        yield from registered(hook)
    finally:
        hook.release.set()


def test_no_report_starts_after_the_close_returned(
    nats: Callable[..., Any], blocking: Blocking, caplog: pytest.LogCaptureFixture
) -> None:
    broker = nats(visibility_timeout=1)
    handed: list[object] = []
    report = broker._nats._report_lost

    def spy(lost: Any) -> None:  # (what the renewals hand the reporter: counted)
        handed.append(lost)
        report(lost)

    broker._nats._report_lost = spy
    held = [lose_one(broker, "first")]
    wait_until(lambda: blocking.calls, "the hook told of the first", within=GUARD)
    held.append(lose_one(broker, "second"))
    wait_until(lambda: len(handed) >= 2, "the second report", within=GUARD)
    with caplog.at_level(logging.WARNING, logger="brokerkit.nats"):
        broker.close()  # (waits for the blocked hook, a bounded wait)
        blocking.closed.set()
        blocking.release.set()
        thread = blocking.thread
        assert thread is not None
        wait_until(lambda: not thread.is_alive(), "the reporter's thread to end", GUARD)
    assert blocking.calls == [(["first"], False)], "a report started after the close"
    assert any(
        "not reported" in record.getMessage() and "closed" in record.getMessage()
        for record in caplog.records
    ), "the leases left unreported were not logged"
