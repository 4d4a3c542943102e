"""A command started with a standard stream closed (``>&-``, ``2>&-``, ``<&-``), as a
person or a service manager may start it (review 31 of the command line).

Before: with stdout closed, ``publish`` stored the message, then failed with
"unexpected AttributeError: 'NoneType' object has no attribute 'write'" (Python sets
``sys.stdout`` to None), its id lost; ``consume`` left the message it could not print
leased. With stderr closed, a publish that worked ended with status 1 (its note could
not be written). With stdin closed, ``publish -`` failed with "unexpected TypeError".

Now a closed stdout is an error named as such, before anything is published or
received; a closed stderr loses the notes, not the status; a closed stdin is a usage
error for ``publish -``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._unlink import unlink_prefixed
from tests.conftest import RedisTarget

pytest.importorskip("typer")

#: Seconds a child may take: a hang guard, never a pace.
GUARD = 60.0


def _run(argv: list[str], closed: int) -> tuple[int, str, str]:
    """``brokerkit ARGV`` with file descriptor ``closed`` (0, 1 or 2) closed, as the
    shell's ``N>&-`` does: status, stdout, stderr (those not closed)."""
    code = (
        f"import os, sys; os.close({closed}); "
        "os.execv(sys.executable, [sys.executable, '-m', 'brokerkit.cli', *sys.argv[1:]])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=GUARD,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _length(url: str) -> int:
    with brokerkit.connect(url) as broker:
        return broker.inspect("orders").length


@pytest.fixture
def url(redis_target: RedisTarget, prefix: str) -> Iterator[str]:
    yield redis_target.url("redis+stream", prefix=prefix)
    unlink_prefixed(BrokerURL.parse(redis_target.url("redis")), prefix)


def test_a_closed_stdout_stops_publish_before_it_publishes(url: str) -> None:
    status, _, stderr = _run(["publish", url, "orders", "hello"], closed=1)
    assert status == 1, stderr
    assert "brokerkit: error:" in stderr and "stdout is closed" in stderr, stderr
    assert "unexpected" not in stderr, stderr
    assert _length(url) == 0


def test_a_closed_stdout_stops_consume_before_it_receives(url: str) -> None:
    with brokerkit.connect(url) as broker:
        broker.publish("orders", "hello")
    status, _, stderr = _run(["consume", url, "orders", "-g", "mail", "-n", "1"], closed=1)
    assert status == 1, stderr
    assert "stdout is closed" in stderr and "unexpected" not in stderr, stderr
    with brokerkit.connect(url) as broker:
        info = broker.inspect("orders")
    assert info.in_flight == 0  # nothing left leased
    assert [g.name for g in info.groups] in ([], ["mail"])


def test_a_closed_stdout_is_named_for_a_command_that_only_prints() -> None:
    status, _, stderr = _run(["--version"], closed=1)
    assert status == 1, stderr
    assert "stdout is closed" in stderr and "unexpected" not in stderr, stderr


def test_a_closed_stderr_keeps_the_status_of_a_publish_that_worked(url: str) -> None:
    status, stdout, _ = _run(["publish", url, "orders", "hello"], closed=2)
    assert status == 0
    assert len(stdout.split()) == 1  # its id
    assert _length(url) == 1


def test_a_closed_stdin_is_a_usage_error_for_publish_from_stdin(url: str) -> None:
    status, _, stderr = _run(["publish", url, "orders", "-"], closed=0)
    assert status == 2, stderr
    assert "stdin is closed" in stderr and "unexpected" not in stderr, stderr
