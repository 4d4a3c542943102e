"""``brokerkit rescue`` on a backend without a rescue step is refused before it
connects (review 31b of the command line).

A report: ``rescue --every`` on a redis+stream URL against a server that accepts and
never answers did not behave as on redis+list (the repro's accept timed out). That is
by design: redis+stream has no rescue step (each consumer reclaims idle entries with
XAUTOCLAIM as it reads), so the command is an error saying so, and a Redis broker
connects lazily: nothing was sent. But the refusal came only after ``connect()``, so on
a backend that connects at once (kombu+amqp) it waited for the broker first: against
a silent server until the connect timeout, then failed with "could not connect"
instead of saying that there is no rescue step. Now the backend's class is asked
before connecting.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.test_cli_review30_publish_ctrl_c import silent_server

__all__ = ["silent_server"]  # fixture

pytest.importorskip("typer")
pytest.importorskip("kombu")

#: Seconds a child may take: a hang guard, never a pace.
GUARD = 60.0


@pytest.mark.parametrize(
    "url",
    [
        "redis+stream://127.0.0.1:{port}/0?socket_timeout=600&socket_connect_timeout=600",
        "kombu+amqp://guest:guest@127.0.0.1:{port}//?connect_timeout=5",
    ],
    ids=["redis+stream", "kombu+amqp"],
)
@pytest.mark.parametrize("every", [[], ["--every", "5"]], ids=["once", "every"])
def test_no_rescue_step_is_said_without_connecting(
    silent_server: socket.socket, url: str, every: list[str]
) -> None:
    port = silent_server.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "BROKERKIT_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "brokerkit.cli", "rescue", url.format(port=port), "t", *every],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GUARD,
        env=env,
    )
    assert done.returncode == 1, done.stderr
    assert "has no public rescue step" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # the error line alone
    silent_server.setblocking(False)
    with pytest.raises(BlockingIOError):  # no connection waits to be accepted
        silent_server.accept()[0].close()
