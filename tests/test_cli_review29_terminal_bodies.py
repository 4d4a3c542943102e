"""``brokerkit consume`` on a terminal (review 29 of the command line): a message body
is shown, never obeyed. Before, a body such as ``ESC ] 0 ; title BEL ESC [ 2 J`` was
written to the terminal as it is: whoever could publish to the topic retitled the
operator's window and cleared the screen (8-bit CSI, ``\\x9b``, too). Piped, the bodies
are still the data as it is."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._unlink import unlink_prefixed
from tests.conftest import RedisTarget

pytest.importorskip("typer")

HOSTILE = "order\x1b]0;PWNED\x07\x1b[2J\x9b31m\x7fend\tx\ny"
#: Seconds the command may take: a hang guard, never a pace.
GUARD = 60.0


def _consume_on_a_terminal(argv: list[str]) -> bytes:
    """What ``brokerkit`` prints on stdout when stdout is a terminal."""
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "brokerkit.cli", *argv],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )
    os.close(follower)
    shown = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], GUARD)
            assert ready, "consume printed nothing more and did not end"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert child.wait(GUARD) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(leader)
    return shown


@pytest.mark.parametrize("as_json", [False, True])
def test_a_body_cannot_command_the_terminal(
    redis_target: RedisTarget, prefix: str, as_json: bool
) -> None:
    url = redis_target.url("redis+stream", prefix=prefix)
    try:
        with brokerkit.connect(url) as broker:
            broker.publish("orders", HOSTILE)
        argv = ["consume", url, "orders", "-n", "1", *(["--json"] if as_json else [])]
        shown = _consume_on_a_terminal(argv).decode("utf-8")
        for control in ("\x1b", "\x07", "\x9b", "\x7f"):
            assert control not in shown, f"{control!r} reached the terminal: {shown!r}"
        if as_json:
            record = json.loads(shown.strip())
            assert record["body"] == HOSTILE  # the same value, escaped
        else:
            # the terminal turns "\n" into "\r\n"; the line feed and the tab stay
            assert shown == ("order\\x1b]0;PWNED\\x07\\x1b[2J\\x9b31m\\x7fend\tx\r\ny\r\n")
    finally:
        unlink_prefixed(BrokerURL.parse(redis_target.url("redis")), prefix)


def test_piped_the_body_is_the_data_as_it_is(redis_target: RedisTarget, prefix: str) -> None:
    url = redis_target.url("redis+stream", prefix=prefix)
    try:
        with brokerkit.connect(url) as broker:
            broker.publish("orders", HOSTILE)
        done = subprocess.run(
            [sys.executable, "-m", "brokerkit.cli", "consume", url, "orders", "-n", "1"],
            capture_output=True,
            timeout=GUARD,
            check=True,
        )
        assert done.stdout.decode("utf-8") == HOSTILE + "\n"
    finally:
        unlink_prefixed(BrokerURL.parse(redis_target.url("redis")), prefix)
