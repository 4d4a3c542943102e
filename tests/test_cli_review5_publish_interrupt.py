"""Ctrl-C during ``brokerkit publish`` (review 5 of the command line, finding 2): the
interrupt is taken between batches only, so a batch that went out always has its ids
printed, and the command says how many messages (from which lines) were published.

Before, the KeyboardInterrupt could land between a batch's ``publish_many`` and the
writing of its ids (or while the server's reply was awaited): a batch stored with no
id printed, and nothing said where the command stopped.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._unlink import unlink_prefixed
from tests.conftest import RedisTarget

pytest.importorskip("typer")

WAIT = 60.0


class _Lines:
    """The lines a child writes on a stream, read by a thread (waits have a deadline)."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line)
        self.queue.put(None)

    def wait_for_count(self, count: int) -> None:
        deadline = time.monotonic() + WAIT
        while len(self.seen) < count:
            line = self.queue.get(timeout=max(deadline - time.monotonic(), 0.001))
            assert line is not None, f"the stream ended after {len(self.seen)} lines"
            self.seen.append(line)

    def rest(self) -> list[str]:
        self.thread.join(WAIT)
        while (line := self.queue.get_nowait()) is not None:
            self.seen.append(line)
        return self.seen


@contextmanager
def _publishing(url: str, topic: str, *extra: str) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        [sys.executable, "-m", "brokerkit.cli", "publish", url, topic, "-", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300"},
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


def _stored_ids(url: str, topic: str) -> list[str]:
    with brokerkit.connect(url) as broker:
        return [d.id for d in broker.consume(topic, timeout=0)]


def _clean(redis_target: RedisTarget, prefix: str) -> None:
    unlink_prefixed(BrokerURL.parse(redis_target.url("redis")), prefix)


def test_ctrl_c_while_stdin_waits_says_what_was_published(
    redis_target: RedisTarget, prefix: str
) -> None:
    """stdin held open with nothing more to read, as on a terminal: Ctrl-C stops the
    read at once, and the command says which lines went out."""
    url = redis_target.url("redis+stream", prefix=prefix)
    try:
        with _publishing(url, "pint") as child:
            assert child.stdin is not None and child.stdout is not None
            assert child.stderr is not None
            child.stdin.write("".join(f"line {n}\n" for n in range(1, 601)))
            child.stdin.flush()
            ids = _Lines(child.stdout)
            # every line that came went out (stdin paused: no wait for a full batch);
            # the read of more waits
            ids.wait_for_count(600)
            child.send_signal(signal.SIGINT)
            assert child.wait(WAIT) == 130
            printed = [line.strip() for line in ids.rest()]
            err = child.stderr.read()
        assert len(printed) == 600
        assert printed == _stored_ids(url, "pint")
        assert "interrupted: published 600 messages to 'pint'" in err
        assert "lines 1 to 600 of stdin" in err and "none from line 601 on" in err
    finally:
        _clean(redis_target, prefix)


@pytest.mark.parametrize("round_", range(8))
def test_ctrl_c_while_publishing_prints_the_id_of_every_message_stored(
    redis_target: RedisTarget, prefix: str, round_: int
) -> None:
    """stdin never runs dry, so the interrupt lands anywhere: in the middle of a
    batch's round trip as likely as not. Every message stored has its id printed."""
    url = redis_target.url("redis+stream", prefix=prefix)
    try:
        with _publishing(url, "pint") as child:
            assert child.stdin is not None and child.stdout is not None
            assert child.stderr is not None
            stdin = child.stdin
            block = "".join(f"line {n}\n" for n in range(1, 10_001))

            def feed() -> None:
                try:
                    while True:
                        stdin.write(block)
                        stdin.flush()
                except (BrokenPipeError, ValueError, OSError):
                    pass

            threading.Thread(target=feed, daemon=True).start()
            ids = _Lines(child.stdout)
            ids.wait_for_count(1000 + 500 * (round_ % 4))
            child.send_signal(signal.SIGINT)
            assert child.wait(WAIT) == 130
            printed = [line.strip() for line in ids.rest()]
            err = child.stderr.read()
        stored = _stored_ids(url, "pint")
        assert printed == stored
        match = re.search(
            r"interrupted: published (\d+) messages to 'pint' \(lines 1 to (\d+)", err
        )
        assert match is not None, err
        assert int(match.group(1)) == int(match.group(2)) == len(stored)
    finally:
        _clean(redis_target, prefix)


def test_the_summary_names_a_batch_published_only_some_of_its_times() -> None:
    from brokerkit.cli._messaging import _Sent

    sent = _Sent("t", 3, stdin=True)
    sent.published, sent.lines, sent.batch, sent.times = 1700, 500, 200, 1
    assert sent.summary() == (
        "published 1700 messages to 't' (lines 1 to 500 of stdin, 3 times each; lines 501 "
        "to 700 1 of 3 times); their ids are on stdout; none from line 701 on"
    )
    assert _Sent("t", 5, stdin=False).summary() == (
        "published 0 messages of 5 to 't'; their ids are on stdout"
    )
