"""The ends of deliveries dropped unsettled on a backend without ACK (redis+pubsub),
made by ``brokerkit._delivery_drops``:

- a plugin's end hook that raises what is not an ``Exception`` (here a
  ``BaseException`` of the test's own; ``SystemExit``, a cancellation) in the background
  thread neither kills that thread nor skips the other plugins' end of that delivery:
  it is logged on ``brokerkit.hooks`` (without the message's body) and later drops end
  without any other drain. Before, the thread died (and was never started again): the
  later drops' ends waited for the next delivery's start, settlement or close, for ever
  in a process that stopped receiving;
- at interpreter exit the ends are made (queued, or of deliveries still held and never
  settled nor closed), before OpenTelemetry's own exit handler exports the spans, in a
  forked child too (its own); a plugin that blocks there holds the exit up a bounded
  while, and says so. Before, none of them was made at exit.

The exit cases run in a subprocess with a plugin that writes its ends to a file, read
after the process has exited."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import brokerkit
from tests.conftest import registered
from tests.redis_server import RedisServer
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
WAIT = 10.0
BODY = "body-not-to-log"


class Stop(BaseException):
    """What a plugin raises that is not an ``Exception``."""


class Ends:
    """Writes down each delivery's end (body, outcome)."""

    def __init__(self) -> None:
        self.ended: list[tuple[Any, str]] = []
        self._lock = threading.Lock()

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any) -> None:
        pass

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str) -> None:
        with self._lock:
            self.ended.append((delivery.body, outcome))


class Raising:
    """Raises :class:`Stop` at the end of the delivery of body ``BODY`` (called before
    :class:`Ends`: registered after it)."""

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any) -> None:
        pass

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any) -> None:
        if delivery.body == BODY:
            raise Stop("a plugin's own stop")


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        yield redis_server


def test_a_base_exception_of_a_plugin_leaves_the_drain_thread_running(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"hooks34d-{uuid.uuid4().hex[:10]}"
    ends = Ends()
    caplog.set_level(logging.ERROR, logger="brokerkit.hooks")
    with brokerkit.connect(server.url("redis+pubsub"), prefix=topic) as broker:
        for _ in registered(ends):
            for _ in registered(Raising()):
                subscription = broker.subscribe(topic)
                assert subscription.receive(timeout=0) is None  # subscribed on the server
                broker.publish_many(topic, [BODY, "later"])
                first = subscription.receive(timeout=WAIT)
                later = subscription.receive(timeout=WAIT)
                assert first is not None and later is not None
                del first
                gc.collect()
                # The other plugin's end of that delivery is made all the same.
                wait_until(lambda: (BODY, "unsettled") in ends.ended, "the first end", WAIT)
                del later
                gc.collect()
                # No start, settlement or close: the background thread alone makes it.
                wait_until(lambda: ("later", "unsettled") in ends.ended, "the later end", WAIT)
                assert sorted(ends.ended) == [(BODY, "unsettled"), ("later", "unsettled")]
                logged = [r for r in caplog.records if r.name == "brokerkit.hooks"]
                assert logged, "the plugin's Stop was not logged"
                assert any(r.exc_info and r.exc_info[0] is Stop for r in logged)
                assert BODY not in caplog.text.replace("'" + BODY + "'", "")
                subscription.close()


# A plugin that appends each end to the file argv[2] (one JSON line: pid, body,
# outcome), and a broker of redis+pubsub on argv[1].
_PRELUDE = """
import gc, json, os, sys, threading, uuid
import brokerkit

class ToFile:
    def __init__(self, path):
        self.path = path
    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery):
        pass
    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery, outcome):
        with open(self.path, "a") as out:
            out.write(json.dumps([os.getpid(), delivery.body, outcome]) + "\\n")

brokerkit.get_plugin_manager().register(ToFile(sys.argv[2]))
topic = "hooks34x-" + uuid.uuid4().hex[:8]
broker = brokerkit.connect(sys.argv[1], prefix=topic)
sub = broker.subscribe(topic)
assert sub.receive(timeout=0) is None  # subscribed on the server

def received(*bodies):
    broker.publish_many(topic, list(bodies))
    got = [sub.receive(timeout=10) for _ in bodies]
    assert all(d is not None for d in got)
    return got
"""


def _run(script: str, server: RedisServer, tmp_path: Path) -> tuple[list[Any], str]:
    """Run ``script`` after the prelude; the ends its processes wrote, and its stderr."""
    ends = tmp_path / "ends.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_PRELUDE) + textwrap.dedent(script),
            server.url("redis+pubsub"),
            str(ends),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # bounds a hung exit: the test fails instead of hanging
    )
    assert done.returncode == 0, done.stderr
    lines = ends.read_text().splitlines() if ends.exists() else []
    return [json.loads(line) for line in lines], done.stderr


def test_a_delivery_still_held_at_exit_ends_before_the_process_exits(
    server: RedisServer, tmp_path: Path
) -> None:
    script = """
    kept, = received("kept")  # held by the module, never settled, nor closed
    """
    ended, _ = _run(script, server, tmp_path)
    assert [(body, outcome) for _, body, outcome in ended] == [("kept", "unsettled")]


def test_what_a_forked_child_dropped_ends_at_its_exit(server: RedisServer, tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = """
    one, = received("one")
    child = os.fork()
    if child == 0:  # the child has no drain thread of its own: its exit makes the end
        del one
        gc.collect()
        sys.exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    one.ack()
    sub.close()
    broker.close()
    print(os.getpid())
    """
    ended, _ = _run(script, server, tmp_path)
    assert sorted((body, outcome) for _, body, outcome in ended) == [
        ("one", "ack"),
        ("one", "unsettled"),
    ]
    assert len({pid for pid, _, _ in ended}) == 2  # one in each process


def test_a_forked_child_where_no_thread_may_start_at_exit_says_so(
    server: RedisServer, tmp_path: Path
) -> None:
    """Python 3.12 and later refuse a new thread in an atexit handler; a forked child
    that never received has no drain thread: the exit does not make the ends in its
    own thread (a plugin's lock held at the fork would hang it), and says so."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = """
    import atexit
    one, = received("one")
    child = os.fork()
    if child == 0:
        def refused(*args, **kwargs):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        # runs before brokerkit's (atexit is last in, first out): as on Python 3.12
        atexit.register(lambda: setattr(threading.Thread, "start", refused))
        del one
        gc.collect()
        sys.exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    one.ack()
    sub.close()
    broker.close()
    """
    ended, stderr = _run(script, server, tmp_path)
    assert sorted((body, outcome) for _, body, outcome in ended) == [("one", "ack")]
    assert "not made by the exit: no thread may start at exit" in stderr


def test_an_ack_ends_its_own_hooks_before_it_raises_a_drops_base_exception(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application thread's settlement that makes a dropped delivery's end first
    (the background thread lost the race) and meets a plugin's BaseException there
    raises it only once its own delivery's hooks have ended (review: the ack was made,
    then raised, and its delivery's hooks ended "unsettled" later, at collection)."""
    from brokerkit import _delivery_drops

    # no background thread: this test's drops are this thread's to make
    monkeypatch.setattr(_delivery_drops, "_DROPS", _delivery_drops._Drops())
    monkeypatch.setattr(_delivery_drops, "_start", lambda drops: True)
    topic = f"hooks34a-{uuid.uuid4().hex[:8]}"
    ends = Ends()
    with brokerkit.connect(server.url("redis+pubsub"), prefix=topic) as broker:
        for _ in registered(ends):
            for _ in registered(Raising()):
                subscription = broker.subscribe(topic)
                assert subscription.receive(timeout=0) is None  # subscribed
                broker.publish_many(topic, [BODY, "acked"])
                first = subscription.receive(timeout=WAIT)
                second = subscription.receive(timeout=WAIT)
                assert first is not None and second is not None
                del first
                gc.collect()
                with pytest.raises(Stop):
                    second.ack()
                assert sorted(ends.ended) == sorted([(BODY, "unsettled"), ("acked", "ack")])
                subscription.close()


def test_a_plugin_blocking_at_exit_holds_the_exit_a_bounded_while(
    server: RedisServer, tmp_path: Path
) -> None:
    script = """
    import logging
    logging.basicConfig()

    class Blocking:
        @brokerkit.hookimpl
        def brokerkit_deliver_start(self, delivery):
            pass
        @brokerkit.hookimpl
        def brokerkit_deliver_end(self, delivery):
            threading.Event().wait()  # for ever

    brokerkit.get_plugin_manager().register(Blocking())
    kept = received("kept")
    """
    _, stderr = _run(script, server, tmp_path)
    assert "not made by the exit" in stderr, stderr
    assert "kept" not in stderr


def test_an_opentelemetry_span_of_a_dropped_delivery_is_exported_at_exit(
    server: RedisServer, tmp_path: Path
) -> None:
    spans = tmp_path / "spans.txt"
    script = f"""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor

    provider = TracerProvider()  # shut down (exporting what ended) by its own atexit
    out = open({str(spans)!r}, "w")
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=out)))
    BrokerkitInstrumentor().instrument(tracer_provider=provider)
    kept, = received("kept")
    """
    _run(script, server, tmp_path)
    exported = spans.read_text()
    assert '"kind": "SpanKind.CONSUMER"' in exported, exported
    assert '"brokerkit.settlement": "unsettled"' in exported, exported


def test_a_receive_that_meets_a_drops_base_exception_starts_nothing(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery start that makes a dropped delivery's end first and meets a plugin's
    BaseException raises it before the start is made: a start the application never
    got would never end (review of 6923cd2, which raised it after the start)."""
    from brokerkit import _delivery_drops

    monkeypatch.setattr(_delivery_drops, "_DROPS", _delivery_drops._Drops())
    monkeypatch.setattr(_delivery_drops, "_start", lambda drops: True)
    topic = f"hooks34s-{uuid.uuid4().hex[:8]}"
    ends = Ends()
    starts: list[Any] = []

    class Starts:
        @brokerkit.hookimpl
        def brokerkit_deliver_start(self, delivery: Any) -> None:
            starts.append(delivery.body)

    with brokerkit.connect(server.url("redis+pubsub"), prefix=topic) as broker:
        for _ in registered(ends):
            for _ in registered(Raising()):
                for _ in registered(Starts()):
                    subscription = broker.subscribe(topic)
                    assert subscription.receive(timeout=0) is None  # subscribed
                    broker.publish_many(topic, [BODY, "second"])
                    first = subscription.receive(timeout=WAIT)
                    assert first is not None
                    del first
                    gc.collect()
                    with pytest.raises(Stop):
                        subscription.receive(timeout=WAIT)
                    assert starts == [BODY]
                    subscription.close()
