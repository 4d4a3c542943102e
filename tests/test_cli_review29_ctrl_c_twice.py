"""A second Ctrl-C stops ``consume``, ``dlq`` and ``rescue --every`` at once (review 29
of the command line). Before, these commands took every Ctrl-C as "stop at the next
safe point" only: on a broker that does not answer (a connection being made, a
server that hangs) the next safe point came at the driver's timeout, 20 s by default
on Redis, and no number of Ctrl-C ended the command sooner; it then failed with "could
not connect", exit status 1. Now a second Ctrl-C raises, outside the step that prints
and acks a message (or republishes and acks a dead letter), and the status is 130.

The server here accepts the connection and never answers; the URL's socket timeout is
600 s, so the command can only end within the guard by the Ctrl-C.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

pytest.importorskip("typer")

#: Seconds the command may take to end once Ctrl-C is pressed again and again: a hang
#: guard (the driver would wait 600 s), never a pace.
GUARD = 60.0
#: How long each Ctrl-C waits for the command to end before the next one.
PRESS_EVERY = 0.5


@pytest.fixture
def silent_server() -> socket.socket:
    """A TCP server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(GUARD)
    yield server
    server.close()


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
        [sys.executable, "-m", "brokerkit.cli", *(a.format(**urls) for a in argv)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    accepted: list[socket.socket] = []
    try:
        accepted.append(silent_server.accept()[0])  # the command waits for its answer
        status = None
        for _ in range(int(GUARD / PRESS_EVERY)):
            child.send_signal(signal.SIGINT)
            try:
                status = child.wait(PRESS_EVERY)
                break
            except subprocess.TimeoutExpired:
                continue
        assert status == 130, "Ctrl-C, again and again, did not stop the command"
        assert child.stderr is not None
        stderr = child.stderr.read()
        assert "Traceback" not in stderr and "error" not in stderr
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)
        if child.stderr is not None:
            child.stderr.close()
        for connection in accepted:
            connection.close()
