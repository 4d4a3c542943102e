"""Ctrl-C stops ``brokerkit publish`` waiting on a broker that does not answer (review
30 of the command line). Before, publish took every Ctrl-C as "stop between two
batches" only: a publish waiting for a server that accepted the connection and never
answered (or a driver retrying) went on until the driver's timeout (20 s on Redis by
default), and no number of Ctrl-C ended it sooner. Now it takes Ctrl-C as ``consume``,
``dlq`` and ``rescue --every`` do (:func:`brokerkit.cli._admin.stop_on_interrupt`
with ``twice_stops``): the first stops between two batches, a second at once, exit
status 130, and the last line on stderr says that the batch under way may be stored
with no id printed (nothing half done reported as done).

The server here accepts the connection and never answers; the URL's socket timeout is
600 s, so the command can only end within the guard by the Ctrl-C. Exactly two
Ctrl-Cs are sent, the second once the command has taken the first (the child says so
on stdout, where the command itself prints nothing: no id comes back).

Each is sent once the child sleeps in its wait for the server's answer (its first
command, HELLO, received): a signal that lands as CPython has just looked at its
signal handlers and is about to block (the handler of the first Ctrl-C returning, as
the child says so) interrupts nothing, and the child would see it only when that wait
ends (600 s). That is CPython's, and a window of microseconds: a person's second
Ctrl-C does not land there, a test's sent on the child's word did (1 run in 20).
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("typer")
pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="tells a sleeping child by /proc"
)

#: Seconds the command may take to take a Ctrl-C, or to end after the second: a hang
#: guard (the driver would wait 600 s), never a pace.
GUARD = 60.0
#: What the child prints on stdout when the command has taken a Ctrl-C without ending.
TAKEN = "took a Ctrl-C"
#: The ``brokerkit`` command, telling on stdout when its Ctrl-C handler has taken a
#: signal and returned.
CHILD = f"""
import os
from brokerkit.cli import _admin, main

signalled = _admin.Interrupt.signalled

def telling(self, signum):
    signalled(self, signum)
    os.write(1, b"{TAKEN}\\n")

_admin.Interrupt.signalled = telling
main()
"""
QUERY = "socket_timeout=600&socket_connect_timeout=600"


def _ended(child: subprocess.Popen[str]) -> str:
    """The exit status and stderr of ``child``, once it has ended."""
    status = child.wait(GUARD)
    assert child.stderr is not None
    return f"status {status}, stderr {child.stderr.read()!r}"


def _sleeping(pid: int) -> None:
    """Return once process ``pid`` (one thread) sleeps in a blocking call: its wait for
    the server here. A bounded poll of its state: nothing to wait on."""
    deadline = time.monotonic() + GUARD
    stat = Path(f"/proc/{pid}/stat")
    while stat.read_text().rpartition(")")[2].split()[0] != "S":
        assert time.monotonic() < deadline, "the child never waited for the server"
        time.sleep(0.001)


def _received(connection: socket.socket) -> None:
    """Return once the server has received the client's first command (HELLO): the
    client is past its send, and its next blocking call is the wait for an answer."""
    connection.settimeout(GUARD)
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = connection.recv(4096)
        assert chunk, f"the client closed the connection after {data!r}"
        data += chunk


def _redis_urls(port: int) -> dict[str, str]:
    """The redis+stream (``url``) and redis+list (``list_url``) URLs of the server on
    ``port``, their timeouts beyond any guard."""
    return {
        "url": f"redis+stream://127.0.0.1:{port}/0?{QUERY}",
        "list_url": f"redis+list://127.0.0.1:{port}/0?{QUERY}",
    }


@contextmanager
def _child(
    argv: list[str], stdin: int | None = subprocess.DEVNULL
) -> Iterator[tuple[subprocess.Popen[str], list[socket.socket]]]:
    """``brokerkit ARGV`` run by :data:`CHILD` in a child process (text pipes); yields it
    and a list for the connections the test accepts from it. On the way out the child
    is killed if still running, and its stdout, stderr and those connections closed."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *argv],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    accepted: list[socket.socket] = []
    try:
        yield child, accepted
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
        for connection in accepted:
            connection.close()


def _first_ctrl_c_taken(child: subprocess.Popen[str], connection: socket.socket) -> None:
    """Send ``child`` a Ctrl-C once it has sent its first command on ``connection`` and
    sleeps in its wait for the answer; return once the command has taken it without
    ending (it only asks the command to stop at its next safe point).

    A Ctrl-C landing just before that blocking call began would only be noted by
    CPython, and taken when the call ended (600 s later): "the first Ctrl-C was not
    taken"."""
    _received(connection)
    _sleeping(child.pid)
    assert child.stdout is not None
    child.send_signal(signal.SIGINT)
    assert select.select([child.stdout], [], [], GUARD)[0], "the first Ctrl-C was not taken"
    line = child.stdout.readline()
    assert line == TAKEN + "\n", f"the first Ctrl-C ended the command: {_ended(child)}"


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A TCP server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(GUARD)
    yield server
    server.close()


@pytest.mark.parametrize(
    ("scheme", "argv", "stdin", "under_way"),
    [
        ("redis+stream", ["hello"], None, "1 was being published"),
        ("redis+stream", ["hello", "-n", "3"], None, "3 were being published"),
        ("redis+stream", ["-"], "one\ntwo\nthree\n", "lines 1 to 3 were being published"),
        ("redis+list", ["hello"], None, "1 was being published"),
    ],
    ids=["one", "count", "stdin", "list"],
)
def test_ctrl_c_pressed_again_stops_a_publish_waiting_on_a_silent_server(
    silent_server: socket.socket,
    scheme: str,
    argv: list[str],
    stdin: str | None,
    under_way: str,
) -> None:
    port = silent_server.getsockname()[1]
    url = f"{scheme}://127.0.0.1:{port}/0?{QUERY}"
    pipe = subprocess.PIPE if stdin is not None else subprocess.DEVNULL
    with _child(["publish", url, "orders", *argv], stdin=pipe) as (child, accepted):
        if stdin is not None:
            assert child.stdin is not None
            child.stdin.write(stdin)
            child.stdin.close()  # the one batch is all of stdin: it waits for the server
        try:
            accepted.append(silent_server.accept()[0])
        except TimeoutError:
            state = "still running" if child.poll() is None else _ended(child)
            pytest.fail(f"the command never connected within {GUARD} s: {state}")
        _first_ctrl_c_taken(child, accepted[0])  # (stops the publish between two batches)
        _sleeping(child.pid)  # back in its wait
        child.send_signal(signal.SIGINT)
        try:
            status = child.wait(GUARD)
        except subprocess.TimeoutExpired:
            pytest.fail("a second Ctrl-C did not stop the publish")
        assert status == 130, _ended(child)
        assert child.stdout is not None and child.stderr is not None
        stdout, stderr = child.stdout.read(), child.stderr.read()
        assert stdout == "", stdout  # no id (none came back); the second Ctrl-C raised
        assert "Traceback" not in stderr and "error" not in stderr, stderr
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("interrupted: published 0 messages"), stderr
        assert f"{under_way} when a second Ctrl-C stopped the command" in last, stderr
        assert "may be stored, with no id printed" in last, stderr
