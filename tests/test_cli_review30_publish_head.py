"""``brokerkit publish ... | head -1`` (review 30 of the command line): once the
reader of stdout has gone, ``publish`` publishes no further batch, and exits quietly
with status 1, as on any closed stdout (click's EPIPE convention, as ``consume |
head`` does). What was published stays published.

Before, it published the next batch all the same (500 lines of stdin, or 10,000
messages of ``--count``), and only its ids' write failed: a write to a pipe fails
only once it reaches the pipe, and a large write that the reader left halfway ended
without error in Python (the buffered writer returns what it wrote, and the text
layer drops the rest), so the batch under way when ``head`` exited gave no sign.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._unlink import unlink_prefixed
from tests.conftest import RedisTarget

pytest.importorskip("typer")

#: Seconds a wait on the child may take: a hang guard, never a pace.
GUARD = 60.0


@contextmanager
def _publishing(url: str, *argv: str) -> Iterator[subprocess.Popen[bytes]]:
    """``brokerkit publish URL orders ARGV`` in a child, its stdin and stdout pipes
    (unbuffered here), stopped and its pipes closed on the way out."""
    child = subprocess.Popen(
        [sys.executable, "-m", "brokerkit.cli", "publish", url, "orders", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                with suppress(BrokenPipeError):
                    stream.close()


def _read_lines(child: subprocess.Popen[bytes], count: int) -> list[bytes]:
    """The first ``count`` lines of the child's stdout (and not a byte more than the
    chunks they came in), waiting for them at most :data:`GUARD` seconds."""
    assert child.stdout is not None
    fd = child.stdout.fileno()
    data = b""
    deadline = time.monotonic() + GUARD
    while data.count(b"\n") < count:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], f"no line {count}: {data!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"stdout ended: {data!r}"
        data += chunk
    return data.split(b"\n")[:count]


def _stored(url: str) -> int:
    with brokerkit.connect(url) as broker:
        return broker.inspect("orders").length


def _ended_quietly(child: subprocess.Popen[bytes]) -> None:
    """The child ended with status 1 (stdout closed), nothing on stderr."""
    status = child.wait(GUARD)
    assert child.stderr is not None
    stderr = child.stderr.read().decode()
    assert status == 1, f"status {status}, stderr {stderr!r}"
    assert stderr == ""


def test_no_line_of_stdin_is_published_once_the_reader_of_stdout_has_gone(
    redis_target: RedisTarget, prefix: str
) -> None:
    """The reader leaves once the first batch's ids are read; the next batch of
    stdin comes after: none of it is published."""
    url = redis_target.url("redis+stream", prefix=prefix)
    try:
        with _publishing(url, "-") as child:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(b"".join(b"line %d\n" % n for n in range(1, 501)))
            assert len(_read_lines(child, 500)) == 500  # the first batch went out
            child.stdout.close()  # as `head -500` does, once it has read them
            child.stdin.write(b"".join(b"line %d\n" % n for n in range(501, 1001)))
            child.stdin.close()
            _ended_quietly(child)
        assert _stored(url) == 500
    finally:
        unlink_prefixed(BrokerURL.parse(redis_target.url("redis")), prefix)


def test_no_batch_of_count_is_published_once_the_reader_of_stdout_has_gone(
    redis_target: RedisTarget, prefix: str
) -> None:
    """The reader leaves after the first id, while the first batch's ids (10,000,
    more than a pipe holds) are being written: the second batch is not published."""
    url = redis_target.url("redis+stream", prefix=prefix)
    try:
        with _publishing(url, "hello", "-n", "30000") as child:
            assert child.stdout is not None and child.stdin is not None
            child.stdin.close()
            assert len(_read_lines(child, 1)) == 1
            child.stdout.close()  # as `head -1` does
            _ended_quietly(child)
        assert _stored(url) == 10_000
    finally:
        unlink_prefixed(BrokerURL.parse(redis_target.url("redis")), prefix)
