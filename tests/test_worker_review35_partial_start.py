"""``brokerkit worker`` whose start failed after some handlers had subscribed: before,
it printed the error alone, though the handlers that had subscribed may have processed
messages (the first handler here processed one and acked it), as if nothing had run.
It now prints, above the error, how many handlers had subscribed and the status line
of each, as a run's final lines are printed; the exit status stays 1.

The refusal is the broker's own: redis+stream refuses to read a topic stored in a
Redis key of another type (IncompatibleTopic), on a private redis-server. The order is
made, not waited for: the worker subscribes its handlers in order, and the second
handler's subscribe first publishes a message to the first's topic and waits (an event,
set by the first handler) until the first handler has it, then subscribes for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.redis_server import RedisServer

pytest.importorskip("typer")

ROOT = Path(__file__).resolve().parent.parent

#: A hang guard for the child process and its gate, never a pace.
GUARD = 60.0
#: The command's longest --interval (365 days): the child prints only its final lines.
INTERVAL = 31_536_000
_QUIET = ("--interval", str(INTERVAL))

#: The first handler's topic, and the second's, which the broker refuses.
JOBS, REFUSED = "jobs-review35", "refused-review35"

SYNC_APP = """
import threading

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.backends.redis.stream.broker import RedisStreamBroker

handled = threading.Event()


class HeldBroker(RedisStreamBroker):
    def subscribe(self, topic, **options):
        if topic == REFUSED:  # the first handler subscribed (in order): give it work
            self.publish(JOBS, {"n": 1})
            assert handled.wait(GUARD), "the first handler never got its message"
        return super().subscribe(topic, **options)


worker = brokerkit.Worker(HeldBroker.from_url(BrokerURL.parse(URL)))


@worker.handler(JOBS, name="first")
def first(body):
    handled.set()


@worker.handler(REFUSED, name="second")
def second(body):
    pass
"""

ASYNC_APP = """
import asyncio

import brokerkit.aio
from brokerkit._url import BrokerURL
from brokerkit.backends.redis.stream.broker_async import AsyncRedisStreamBroker

handled = asyncio.Event()


class HeldBroker(AsyncRedisStreamBroker):
    async def subscribe(self, topic, **options):
        if topic == REFUSED:  # the first handler subscribed (in order): give it work
            await self.publish(JOBS, {"n": 1})
            await asyncio.wait_for(handled.wait(), GUARD)
        return await super().subscribe(topic, **options)


worker = brokerkit.aio.Worker(HeldBroker.from_url(BrokerURL.parse(URL)))


@worker.handler(JOBS, name="first")
async def first(body):
    handled.set()


@worker.handler(REFUSED, name="second")
async def second(body):
    pass
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BROKERKIT_URL", "BROKERKIT_DEBUG")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.parametrize(("name", "source"), [("sync_app", SYNC_APP), ("async_app", ASYNC_APP)])
def test_a_start_refused_after_a_handler_ran_reports_what_it_did(
    tmp_path: Path, redis_server: RedisServer, name: str, source: str
) -> None:
    url = redis_server.url("redis+stream")
    # the second handler's topic is held in a Redis key of another type: refused
    redis_server.client().set(f"brokerkit:{{{REFUSED}}}", "not a stream")
    header = f"URL, JOBS, REFUSED, GUARD = {url!r}, {JOBS!r}, {REFUSED!r}, {GUARD!r}\n"
    (tmp_path / f"{name}.py").write_text(header + textwrap.dedent(source))
    done = subprocess.run(
        # no periodic status line (10 s by default) may come before the final ones
        [*(sys.executable, "-m", "brokerkit.cli", "worker", f"{name}:worker"), *_QUIET],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=GUARD * 2,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    # the error is the last line, as for any start that failed
    assert lines[-1].startswith("brokerkit: error: the topic 'refused-review35' at "), lines
    assert "is stored in a Redis key of another type" in lines[-1], lines
    # above it: what ran before it, in the form of a run's final status lines
    assert lines[-3] == (
        "worker did not start: 1 of 2 handler(s) had subscribed when the error below "
        "stopped it; what they did:"
    ), lines
    assert lines[-2].startswith(
        "handler=first topic=jobs-review35 processed=1 failed=0 retried=0 "
        "dead_lettered=0 in_flight=0 rate="
    ), lines
    # the handler that never subscribed has no line, nor does anything claim a run
    assert "handler=second" not in done.stderr, done.stderr
    assert "worker running" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout == "", done.stdout
    # the message was acked: none is pending in the first handler's group
    pending = redis_server.client().xpending(f"brokerkit:{{{JOBS}}}", "default")
    assert pending["pending"] == 0, pending
