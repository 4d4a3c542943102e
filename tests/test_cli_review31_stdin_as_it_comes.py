"""``tail -f log | brokerkit publish URL TOPIC -`` publishes each line as it comes
(review 31 of the command line).

Before, ``publish -`` read stdin 500 lines at a time: lines from a slow pipe were held
back until 500 had come, or stdin ended, however long that took. Now a batch is what
has come: once stdin has nothing more to give at once, the lines read so far are
published; a line is taken once its line break has come.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._unlink import unlink_prefixed
from tests.conftest import RedisTarget
from tests.test_cli_review30_publish_head import _publishing

pytest.importorskip("typer")

#: Seconds a wait on the child may take: a hang guard, never a pace.
GUARD = 60.0


def _lines(fd: int, count: int, data: bytes = b"") -> tuple[list[bytes], bytes]:
    """The next ``count`` lines of ``fd`` and what came after them, waiting for them at
    most :data:`GUARD` seconds."""
    deadline = time.monotonic() + GUARD
    while data.count(b"\n") < count:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], (
            f"no id for the line after {data!r} while stdin stays open"
        )
        chunk = os.read(fd, 4096)
        assert chunk, f"stdout ended: {data!r}"
        data += chunk
    *lines, rest = data.split(b"\n", count)
    return lines, rest


def _bodies(url: str) -> list[str]:
    with brokerkit.connect(url) as broker, broker.subscribe("orders") as subscription:
        bodies = []
        while (delivery := subscription.receive(timeout=0)) is not None:
            bodies.append(delivery.body)
            delivery.ack()
        return bodies


def test_lines_from_a_pipe_that_stays_open_are_published_as_they_come(
    redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+stream", prefix=prefix)
    try:
        with _publishing(url, "-") as child:
            assert child.stdin is not None and child.stdout is not None
            fd = child.stdout.fileno()
            child.stdin.write(b"one\ntwo\nthree\n")
            ids, rest = _lines(fd, 3)
            assert all(ids), ids
            # the last line's break comes in two writes: it goes out once it has come
            child.stdin.write(b"fo")
            child.stdin.write(b"ur\r\n")
            more, rest = _lines(fd, 1, rest)
            assert _bodies(url) == ["one", "two", "three", "four"]
            child.stdin.write(b"five")  # no line break: stdin's end ends the line
            child.stdin.close()
            status = child.wait(GUARD)
            assert child.stderr is not None
            stderr = child.stderr.read().decode()
            assert status == 0, stderr
            last, _ = _lines(fd, 1, rest)
            assert len({*ids, *more, *last}) == 5
            assert "published 5 messages to 'orders'" in stderr
            assert _bodies(url) == ["five"]
    finally:
        unlink_prefixed(BrokerURL.parse(redis_target.url("redis")), prefix)


def test_a_file_is_published_whole_in_batches(
    redis_target: RedisTarget, prefix: str, tmp_path: os.PathLike[str]
) -> None:
    """Input that is all there: every line, in order, ids in order; a bad byte on a
    later line names that line after the batches before it went out."""
    url = redis_target.url("redis+stream", prefix=prefix)
    path = os.path.join(tmp_path, "lines")
    with open(path, "wb") as file:
        file.write(b"".join(b"line %d\n" % n for n in range(1, 1202)))
        file.write(b"bad \xff\n")
    try:
        with open(path, "rb") as stdin:
            done = subprocess.run(
                [sys.executable, "-m", "brokerkit.cli", "publish", url, "orders", "-"],
                stdin=stdin,
                capture_output=True,
                timeout=GUARD,
            )
        stderr = done.stderr.decode()
        assert done.returncode == 1, stderr
        assert "line 1202 of stdin: not valid utf-8 text (byte 0xff" in stderr, stderr
        published = done.stdout.decode().split()
        assert f"the {len(published)} message(s) read before it were published" in stderr
        assert _bodies(url) == [f"line {n}" for n in range(1, len(published) + 1)]
        assert len(published) >= 1000  # whole batches of 500 went out before the bad one
    finally:
        unlink_prefixed(BrokerURL.parse(redis_target.url("redis")), prefix)
