"""redis+list: a topic whose queue key holds another Redis type is refused as it is
subscribed to, as redis+stream refuses it. Before, subscribe looked at nothing and
every fetch failed on the key: ``brokerkit worker`` printed "worker running 1
handler(s)" and then "receiving from 'wt' failed (again in 0.5 s): ... holds a string,
not a list" for ever, where docs/workers.md promises the error and exit status 1.

The look is one ``TYPE`` a subscribe (none a fetch); a queue that does not exist yet is
an empty topic; a key whose type changes after the start is still the fetch's error,
which a running worker logs and retries. Against real redis-servers (the session's, or
a private one where commands are counted or a worker runs)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import IncompatibleTopic
from tests.conftest import RedisTarget
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis_list

ROOT = Path(__file__).resolve().parent.parent

#: A hang guard for a child process or an async test, never a pace.
GUARD = 60.0

#: A key of each type but a list, as another program (or redis+stream) writes it.
WRITERS: dict[str, Callable[[redis.Redis, str], Any]] = {
    "hash": lambda r, k: r.hset(k, "field", "precious"),
    "set": lambda r, k: r.sadd(k, "precious"),
    "string": lambda r, k: r.set(k, "precious"),
    "zset": lambda r, k: r.zadd(k, {"precious": 1}),
    "stream": lambda r, k: r.xadd(k, {"f": "precious"}),
}


def _snapshot(client: redis.Redis, prefix: str) -> dict[bytes, tuple[bytes, bytes | None]]:
    return {k: (client.type(k), client.dump(k)) for k in client.scan_iter(f"{prefix}*")}


def _refusal(topic: str, key: str, kind: str) -> str:
    """The start of the refusal's words (redis+stream's), as a pattern."""
    return (
        rf"^the topic '{re.escape(topic)}' at redis\+list://\S+ is stored in a Redis key of "
        rf"another type \('{re.escape(key)}' holds a {kind}, not a list; "
    )


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_subscribe_refuses_a_queue_key_of_another_type(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str, kind: str
) -> None:
    key = f"{prefix}:{{wt}}"
    WRITERS[kind](redis_client, key)
    before = _snapshot(redis_client, prefix)
    url = redis_target.url("redis+list")
    with (
        brokerkit.connect(url, prefix=prefix) as broker,
        pytest.raises(IncompatibleTopic, match=_refusal("wt", key, kind)),
    ):
        broker.subscribe("wt", group="g")
    assert _snapshot(redis_client, prefix) == before  # the key untouched, nothing written


@pytest.mark.parametrize("kind", ["string", "stream"])
def test_the_asyncio_subscribe_refuses_it_too(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str, kind: str
) -> None:
    key = f"{prefix}:{{wt}}"
    WRITERS[kind](redis_client, key)
    before = _snapshot(redis_client, prefix)

    async def main() -> None:
        async with brokerkit.aio.connect(redis_target.url("redis+list"), prefix=prefix) as broker:
            with pytest.raises(IncompatibleTopic, match=_refusal("wt", key, kind)):
                await broker.subscribe("wt", group="g")

    asyncio.run(asyncio.wait_for(main(), GUARD))
    assert _snapshot(redis_client, prefix) == before


def test_the_queue_a_queue_key_template_names_is_the_one_looked_at(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}q:wt"
    redis_client.set(key, "precious")
    url = redis_target.url("redis+list")
    with brokerkit.connect(url, queue_key=f"{prefix}q:*") as broker:
        with pytest.raises(IncompatibleTopic, match=_refusal("wt", key, "string")):
            broker.subscribe("wt")
        # a topic whose queue is not there yet is an empty topic
        assert broker.subscribe("other").receive(timeout=0) is None
    redis_client.delete(key)


def test_a_queue_not_there_yet_is_an_empty_topic_and_the_look_writes_nothing(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    with brokerkit.connect(redis_target.url("redis+list"), prefix=prefix) as broker:
        subscription = broker.subscribe("wt", group="g")
        assert _snapshot(redis_client, prefix) == {}  # the subscribe wrote nothing
        broker.publish("wt", "first")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == "first"
        delivery.ack()


def _type_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_type")
    return int(stats["calls"]) if stats else 0


def test_the_look_is_one_type_a_subscribe_and_none_a_fetch(redis_server: RedisServer) -> None:
    client = redis_server.client()
    try:
        with brokerkit.connect(redis_server.url("redis+list")) as broker:
            broker.publish_many("wt", [1, 2])
            before = _type_calls(client)
            subscription = broker.subscribe("wt", prefetch=1)
            assert _type_calls(client) == before + 1
            for body in (1, 2):
                delivery = subscription.receive(timeout=5)
                assert delivery is not None and delivery.body == body
                delivery.ack()
            assert subscription.receive(timeout=0) is None
            assert broker.rescue("wt") == 0
            assert _type_calls(client) == before + 1  # the fetches looked at no type
    finally:
        client.close()


# -- the commands --------------------------------------------------------------------

SYNC_APP = """
import brokerkit

worker = brokerkit.Worker()


@worker.handler("wt", group="g")
def handle(body):
    pass
"""

ASYNC_APP = """
import brokerkit.aio

worker = brokerkit.aio.Worker()


@worker.handler("wt", group="g")
async def handle(body):
    pass
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BROKERKIT_URL", "BROKERKIT_DEBUG")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[[str, str], subprocess.Popen[str]]]:
    """``start(source, url)``: ``brokerkit worker`` on that app, stderr piped; killed
    at the end if it still runs."""
    started: list[subprocess.Popen[str]] = []

    def start(source: str, url: str) -> subprocess.Popen[str]:
        (tmp_path / "app37.py").write_text(textwrap.dedent(source))
        process = subprocess.Popen(
            [sys.executable, "-m", "brokerkit.cli", "worker", "app37:worker", url],
            cwd=tmp_path,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(GUARD)
        if process.stderr is not None:
            process.stderr.close()


def _line_with(stream: IO[str], words: str) -> tuple[str | None, list[str]]:
    """The first line holding ``words`` (None at the end) and the lines read."""
    lines: list[str] = []
    for line in stream:
        lines.append(line.rstrip("\n"))
        if words in line:
            return line, lines
    return None, lines


@pytest.mark.parametrize("source", [SYNC_APP, ASYNC_APP], ids=["sync", "asyncio"])
def test_the_worker_stops_at_start_with_the_error_and_status_1(
    redis_server: RedisServer,
    worker_process: Callable[[str, str], subprocess.Popen[str]],
    source: str,
) -> None:
    client = redis_server.client()
    client.set("aud-w:{wt}", "x")
    client.close()
    url = redis_server.url("redis+list") + "?prefix=aud-w"
    process = worker_process(source, url)
    assert process.stderr is not None
    running, lines = _line_with(process.stderr, "worker running")
    assert running is None, f"the worker started on the refused topic: {lines}"
    assert process.wait(GUARD) == 1, lines
    assert re.match(r"^brokerkit: error: " + _refusal("wt", "aud-w:{wt}", "string")[1:], lines[-1])


def test_a_queue_key_whose_type_changes_later_is_logged_and_retried(
    redis_server: RedisServer, worker_process: Callable[[str, str], subprocess.Popen[str]]
) -> None:
    url = redis_server.url("redis+list") + "?prefix=aud-w"
    process = worker_process(SYNC_APP, url)
    assert process.stderr is not None
    running, lines = _line_with(process.stderr, "worker running 1 handler(s)")
    assert running is not None, lines
    client = redis_server.client()
    try:
        client.set("aud-w:{wt}", "x")  # after the start: the fetch's error, retried
        warning, lines = _line_with(process.stderr, "receiving from 'wt' failed (again in")
        assert warning is not None and "WARNING" in warning, lines
        assert "is stored in a Redis key of another type" in warning
        client.delete("aud-w:{wt}")
    finally:
        client.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(GUARD) == 143


def test_consume_refuses_the_topic_before_it_says_it_is_consuming(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    client.hset("aud-w:{wt}", "field", "precious")
    client.close()
    url = redis_server.url("redis+list") + "?prefix=aud-w"
    done = subprocess.run(
        [sys.executable, "-m", "brokerkit.cli", "consume", url, "wt", "--timeout", "1"],
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines  # no "consuming 'wt' on ..." before it
    assert re.match(r"^brokerkit: error: " + _refusal("wt", "aud-w:{wt}", "hash")[1:], lines[0])
