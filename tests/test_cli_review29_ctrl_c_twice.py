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

import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli_review30_publish_ctrl_c import (
    CHILD,
    GUARD,
    TAKEN,
    _ended,
    _received,
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
    port = silent_server.getsockname()[1]
    query = "socket_timeout=600&socket_connect_timeout=600"
    urls = {
        "url": f"redis+stream://127.0.0.1:{port}/0?{query}",
        "list_url": f"redis+list://127.0.0.1:{port}/0?{query}",
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *(a.format(**urls) for a in argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    accepted: list[socket.socket] = []
    try:
        accepted.append(silent_server.accept()[0])
        # Each Ctrl-C once the command sleeps in its wait for the answer: one landing
        # just before that blocking call began was only noted by CPython, and taken
        # when the call ended (600 s later): "the first Ctrl-C was not taken".
        _received(accepted[0])
        _sleeping(child.pid)
        assert child.stdout is not None and child.stderr is not None
        child.send_signal(signal.SIGINT)
        # the first Ctrl-C only asks the command to stop at its next safe point
        assert select.select([child.stdout], [], [], GUARD)[0], "the first Ctrl-C was not taken"
        line = child.stdout.readline()
        assert line == TAKEN + "\n", f"the first Ctrl-C ended the command: {_ended(child)}"
        _sleeping(child.pid)  # back in its wait
        child.send_signal(signal.SIGINT)
        try:
            status = child.wait(GUARD)
        except subprocess.TimeoutExpired:
            pytest.fail("a second Ctrl-C did not stop the command")
        assert status == 130, _ended(child)
        stderr = child.stderr.read()
        assert "Traceback" not in stderr and "error" not in stderr
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
        for connection in accepted:
            connection.close()
