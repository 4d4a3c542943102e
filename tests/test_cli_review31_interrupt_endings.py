"""How a command ends after Ctrl-C (review 31 of the command line).

1. One Ctrl-C while a broker is being connected to, before the command has taken
   Ctrl-C over (kombu connects in ``connect()``), ended the command with status 130
   and not a word: typer turned the KeyboardInterrupt into a silent exit status, where
   every other stop by Ctrl-C says so on stderr. Now it says "interrupted".
2. After one Ctrl-C (taken: the command stops at its next safe point), a broker's own
   error ending the wait under way (its timeout, the server gone) ended the command as
   that error, ``brokerkit: error: ...`` and status 1, as though the user had not asked
   to stop. Now the ending is the interrupt's, status 130 and an "interrupted" line that
   names the failure; an error that came before the Ctrl-C still ends the command.

The servers here accept connections and never answer (timeouts of 600 s): only the
Ctrl-C, or the test closing the server after the command took the Ctrl-C, ends the
wait. Each Ctrl-C is sent once the command sleeps in that wait (see
tests/test_cli_review30_publish_ctrl_c.py).
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from brokerkit.exceptions import ConnectionFailed
from tests.test_cli_review30_publish_ctrl_c import (
    GUARD,
    _child,
    _first_ctrl_c_taken,
    _redis_urls,
    _sleeping,
    silent_server,
)

__all__ = ["silent_server"]  # fixture

typer = pytest.importorskip("typer")
pytest.importorskip("kombu")

from brokerkit.cli._admin import stop_on_interrupt  # noqa: E402

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="tells a sleeping child by /proc"
)

#: The eight bytes an AMQP 0-9-1 client sends first.
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


@pytest.mark.parametrize(
    "argv",
    [
        ["publish", "{url}", "orders", "hello"],
        ["consume", "{url}", "orders"],
        ["inspect", "{url}", "orders"],
    ],
    ids=["publish", "consume", "inspect"],
)
def test_one_ctrl_c_while_connecting_says_interrupted(
    silent_server: socket.socket, argv: list[str]
) -> None:
    port = silent_server.getsockname()[1]
    url = f"kombu+amqp://guest:guest@127.0.0.1:{port}//?connect_timeout=600"
    with _child([a.format(url=url) for a in argv]) as (child, accepted):
        accepted.append(silent_server.accept()[0])
        accepted[0].settimeout(GUARD)
        header = b""
        while len(header) < len(AMQP_HEADER):
            chunk = accepted[0].recv(len(AMQP_HEADER) - len(header))
            assert chunk, f"the client closed the connection after {header!r}"
            header += chunk
        assert header == AMQP_HEADER
        _sleeping(child.pid)  # waits for the server's Connection.Start
        child.send_signal(signal.SIGINT)
        try:
            status = child.wait(GUARD)
        except subprocess.TimeoutExpired:
            pytest.fail("one Ctrl-C did not stop a command connecting to a silent server")
        assert child.stdout is not None and child.stderr is not None
        stderr = child.stderr.read()
        assert status == 130, f"status {status}, stderr {stderr!r}"
        assert "Traceback" not in stderr and "error" not in stderr, stderr
        assert stderr.strip().splitlines()[-1:] == ["interrupted"], stderr
        assert child.stdout.read() == ""


@pytest.mark.parametrize(
    ("argv", "last"),
    [
        (
            ["publish", "{url}", "orders", "hello"],
            "interrupted: published 0 messages of 1 to 'orders'",
        ),
        (["consume", "{url}", "orders", "-g", "mail"], "interrupted"),
        (["dlq", "{url}", "orders", "--all"], "interrupted"),
        (["rescue", "{list_url}", "orders", "--every", "5"], "interrupted"),
    ],
    ids=["publish", "consume", "dlq", "rescue"],
)
def test_an_error_after_the_first_ctrl_c_ends_as_the_interrupt(
    silent_server: socket.socket, argv: list[str], last: str
) -> None:
    urls = _redis_urls(silent_server.getsockname()[1])
    with _child([a.format(**urls) for a in argv]) as (child, accepted):
        accepted.append(silent_server.accept()[0])
        _first_ctrl_c_taken(child, accepted[0])
        # the server goes away: the wait under way ends in an error (connection refused
        # on every retry), after the Ctrl-C
        accepted.pop().close()
        silent_server.close()
        try:
            status = child.wait(GUARD)
        except subprocess.TimeoutExpired:
            pytest.fail("the command did not end once the server had gone")
        assert child.stderr is not None
        stderr = child.stderr.read()
        assert status == 130, f"status {status}, stderr {stderr!r}"
        assert "Traceback" not in stderr and "brokerkit: error" not in stderr, stderr
        final = stderr.strip().splitlines()[-1]
        assert final.startswith(last), stderr
        assert "could not connect" in final, stderr  # what ended the wait is told


def _fails_then_ctrl_c() -> None:
    with stop_on_interrupt(twice_stops=True) as stop:
        try:
            raise ConnectionFailed("the server went away")
        finally:  # the cleanup: a hand-back waiting on the lost server
            signal.raise_signal(signal.SIGINT)
            assert stop.is_set()


def _ctrl_c_then_fails() -> None:
    with stop_on_interrupt(twice_stops=True) as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.is_set()
        raise ConnectionFailed("the server went away")


def test_an_error_before_the_ctrl_c_still_ends_the_command() -> None:
    """In-process: an error raised, then a Ctrl-C during the cleanup it runs: the
    error ends the command, not the interrupt; the other way round, the interrupt."""
    with pytest.raises(ConnectionFailed):
        _fails_then_ctrl_c()
    with pytest.raises(typer.Exit) as ended:
        _ctrl_c_then_fails()
    assert ended.value.exit_code == 130
