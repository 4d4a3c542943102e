"""A second Ctrl-C stops ``consume``, ``dlq`` and ``rescue --every`` at once (review 29
of the command line). Before, these commands took every Ctrl-C as "stop at the next
safe point" only: on a broker that does not answer (a connection being made, a
server that hangs) the next safe point came at the driver's timeout, 20 s by default
on Redis, and no number of Ctrl-C ended the command sooner; it then failed with "could
not connect", exit status 1. Now a second Ctrl-C raises, outside the step that prints
and acks a message (or republishes and acks a dead letter), and the status is 130.

The server here accepts the connection and never answers; the URL's socket timeout is
600 s, so the command can only end within the guard by the Ctrl-C. Exactly two Ctrl-Cs
are sent, the second once the command has taken the first (the child says so on
stdout): a third, landing after the command restored Python's own SIGINT handler as
it ended, would kill it by SIGINT (status -2), and a Ctrl-C the command had not yet
taken would test nothing.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.test_cli_review30_publish_ctrl_c import (
    GUARD,
    _child,
    _ended,
    _first_ctrl_c_taken,
    _redis_urls,
    _sleeping,
    silent_server,
)

__all__ = ["silent_server"]  # fixture

pytest.importorskip("typer")
pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="tells a sleeping child by /proc"
)


@pytest.mark.parametrize(
    "argv",
    [
        ["consume", "{url}", "orders", "-g", "mail"],
        ["dlq", "{url}", "orders", "--all"],
        ["rescue", "{list_url}", "orders", "--every", "5"],
    ],
    ids=["consume", "dlq", "rescue"],
)
def test_ctrl_c_pressed_again_stops_a_command_waiting_on_a_silent_server(
    silent_server: socket.socket, argv: list[str]
) -> None:
    urls = _redis_urls(silent_server.getsockname()[1])
    with _child([a.format(**urls) for a in argv], stdin=None) as (child, accepted):
        accepted.append(silent_server.accept()[0])
        _first_ctrl_c_taken(child, accepted[0])
        _sleeping(child.pid)  # back in its wait
        child.send_signal(signal.SIGINT)
        try:
            status = child.wait(GUARD)
        except subprocess.TimeoutExpired:
            pytest.fail("a second Ctrl-C did not stop the command")
        assert status == 130, _ended(child)
        assert child.stderr is not None
        stderr = child.stderr.read()
        assert "Traceback" not in stderr and "error" not in stderr
