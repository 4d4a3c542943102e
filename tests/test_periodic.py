"""Background work logs a stretch of failures once when it starts and once when it
ends, never a line (or a traceback) per round."""

from __future__ import annotations

import logging
import threading

import pytest
import redis

from brokerkit.backends.redis._periodic import Periodic


def test_a_lost_connection_is_one_warning_and_its_return_one_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    recovered = threading.Event()

    def work() -> None:
        nonlocal calls
        calls += 1
        if calls <= 5:
            raise redis.ConnectionError("Connection refused")
        recovered.set()

    caplog.set_level(logging.DEBUG, logger="brokerkit.redis")
    periodic = Periodic(work, 0.005, "test-periodic", what="renew leases")
    periodic.start()
    try:
        assert recovered.wait(10)
    finally:
        periodic.stop()
    records = [r for r in caplog.records if r.name == "brokerkit.redis"]
    by_level = {level: [r for r in records if r.levelno == level] for level in (30, 20, 40)}
    assert len(by_level[logging.WARNING]) == 1, records
    assert "renew leases" in by_level[logging.WARNING][0].getMessage()
    assert by_level[logging.WARNING][0].exc_info is None  # no traceback for a lost server
    assert [r.getMessage() for r in by_level[logging.INFO]] == ["could renew leases again"]
    assert not by_level[logging.ERROR]


def test_an_unexpected_error_is_logged_with_its_traceback_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds = threading.Event()
    calls = 0

    def work() -> None:
        nonlocal calls
        calls += 1
        if calls >= 4:
            rounds.set()
        raise ValueError("a bug")

    periodic = Periodic(work, 0.005, "test-periodic", what="rescue")
    periodic.start()
    try:
        assert rounds.wait(10)
    finally:
        periodic.stop()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
