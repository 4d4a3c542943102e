"""The command line is consistent with itself and its docs: version, help, one error
style, the URL from BROKERKIT_URL, Ctrl-C as 130, undecodable bodies, and check and
bench cleaning up after themselves."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest
import redis

import brokerkit
from brokerkit.cli._admin import Interrupt
from brokerkit.cli._app import run
from brokerkit.cli._check import Outcome, run_contracts
from brokerkit.cli._url import URL_ENV
from tests.conftest import RedisTarget
from tests.interrupting import brokerkit_child

pytest.importorskip("typer")


@pytest.fixture(autouse=True)
def _no_url_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)


def test_version_and_short_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert (
        capsys.readouterr().out == f"brokerkit {brokerkit.__version__} (distribution pybrokerkit)\n"
    )
    assert run(["publish", "-h"]) == 0
    assert "Usage: brokerkit publish" in capsys.readouterr().out


def test_shell_completion_is_offered(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    assert "--install-completion" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["publish"], "Missing argument 'URL'. Give it, or set BROKERKIT_URL."),
        (
            ["consume", "memory://", "t", "-t", "nan"],
            "must be a finite number of seconds, 0 or more",
        ),
        (["consume", "memory://", "t", "-t", "-1"], "got -1.0"),
        (["consume", "memory://", "t", "-t", "inf"], "leave it out to wait without end"),
        (["rescue", "memory://", "t", "--every", "nan"], "positive number of seconds"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_usage_errors_are_one_line_like_broker_errors(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("brokerkit: error: ")
    assert expected in lines[0]
    assert lines[0].endswith("-h')")


def test_the_url_comes_from_the_environment(
    shared: tuple[str, brokerkit.Broker],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, broker = shared
    monkeypatch.setenv(URL_ENV, url)
    assert run(["publish", "orders", "from-env", "-H", "k=v"]) == 0
    assert run(["inspect", "orders", "--json"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{") :])["length"] == 1
    # An explicit URL still wins over the environment.
    assert run(["publish", "memory://elsewhere", "orders", "not-here"]) == 0
    deliveries = list(broker.consume("orders", timeout=0))
    assert [(d.body, d.headers) for d in deliveries] == [("from-env", {"k": "v"})]


def test_demo_takes_the_url_as_an_argument_like_everybrokerkit_child() -> None:
    argv = ["demo", "memory://demo-arg", "--orders", "1", "--sale-orders", "40", "--speed", "0"]
    assert run(argv) == 0


def test_inspect_of_a_missing_topic_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["inspect", "memory://", "nothing-here"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "topic 'nothing-here' not found on memory://" in captured.err


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream", "redis+pubsub"])
def test_inspect_of_a_missing_redis_topic_says_so(
    scheme: str, redis_target: RedisTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    """redis+list has one implicit group: an empty one is not something found."""
    url = redis_target.url(scheme)
    assert run(["inspect", url, "nothing-here"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "topic 'nothing-here' not found" in captured.err


def test_publish_to_memory_says_the_message_lives_in_this_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["publish", "memory://", "t", "x"]) == 0
    assert "memory:// lives in this process only" in capsys.readouterr().err


def test_rich_markup_in_an_install_hint_is_shown_as_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import brokerkit.cli._admin as admin

    class Missing:
        schemes = ("needs+driver",)
        capabilities = None
        plugin = "some-plugin[x]"
        target = "nowhere:Broker"
        install_hint = 'pip install "pybrokerkit[redis]"'

    monkeypatch.setattr(admin, "list_backends", lambda: [Missing()])
    assert run(["backends"]) == 0
    table = capsys.readouterr().out
    assert '"pybrokerkit[redis]"' in "".join(table.split())
    assert "some-plugin[x]" in "".join(table.split())


def test_consume_prints_an_undecodable_body_raw_and_goes_on(
    redis_target: RedisTarget,
    redis_client: redis.Redis,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Envelopes another program wrote, saying JSON about bodies that are not JSON.
    def envelope(number: int, payload: bytes) -> bytes:
        return b'BK1{"id":"m%d","ct":"application/json","ts":1.5}\n' % number + payload

    url = redis_target.url("redis+list", prefix=prefix)
    queue = f"{prefix}:{{mixed}}"
    redis_client.lpush(queue, envelope(1, b"{not json"), envelope(2, b'{"ok": true}'))
    redis_client.lpush(queue, envelope(3, b"\xff{"))
    assert run(["consume", url, "mixed", "--count", "3", "--timeout", "5"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["{not json", '{"ok": true}', "\ufffd{"]
    assert captured.err.count("undecodable, printed raw") == 2
    assert redis_client.llen(queue) == 0

    redis_client.lpush(queue, envelope(4, b"{not json"), envelope(5, b"\xff{"))
    assert run(["consume", url, "mixed", "--count", "2", "--json", "--timeout", "5"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["body_raw"] == "{not json" and "cannot decode" in first["undecodable"]
    assert second["body_base64"] == "/3s=" and second["undecodable"]


class _Lines:
    """The lines a child writes on a stream, read by a thread, so that waiting for one
    has a deadline even when the child writes nothing."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line)

    def wait_for(self, needle: str, deadline: float) -> None:
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if needle in line:
                return
        raise AssertionError(f"no {needle!r} in {self.seen!r}")


def test_ctrl_c_on_consume_exits_130() -> None:
    with brokerkit_child("consume", "memory://", "t") as child:
        assert child.stderr is not None
        _Lines(child.stderr).wait_for("consuming", time.monotonic() + 60)
        child.send_signal(signal.SIGINT)
        assert child.wait(60) == 130


def test_rescue_every_prints_each_round_and_exits_130_on_ctrl_c(
    redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+list", prefix=prefix)
    with brokerkit_child("rescue", url, "jobs", "--every", "0.05") as child:
        assert child.stderr is not None
        lines = _Lines(child.stderr)
        deadline = time.monotonic() + 60
        lines.wait_for("round 1: rescued 0", deadline)
        lines.wait_for("round 2: rescued 0", deadline)
        child.send_signal(signal.SIGINT)
        assert child.wait(60) == 130


# pytest-timeout's default method uses SIGALRM, which this test takes over
@pytest.mark.timeout(60, method="thread")
def test_a_signal_never_deadlocks_the_wait_it_interrupts() -> None:
    """The stop event is set from a signal handler, which runs between two bytecodes of
    the main thread, maybe while that thread is inside ``wait``. A ``threading.Event``
    deadlocks there now and then (its lock is held by the very thread the handler runs
    on: a ``rescue --every`` once hung after Ctrl-C); thousands of signals must each
    end the wait they interrupt."""

    def on_alarm(signum: int, frame: Any) -> None:
        current.set()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        for _ in range(10_000):
            current = Interrupt()
            signal.setitimer(signal.ITIMER_REAL, 0.0001)
            while not current.wait(0.001):
                pass
            current.close()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(count=1000))


def test_check_streams_each_result_once_and_cleans_up(
    redis_target: RedisTarget, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[list[str]] = []
    real_popen = subprocess.Popen

    def recording_popen(command: list[str], **kwargs: Any) -> Any:
        commands.append(list(command))
        return real_popen(command, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    before = _keys(redis_client)
    events: list[Any] = []
    url = redis_target.url("redis+list", socket_timeout="7")
    status, outcomes = run_contracts(
        url, ["-k", "no_loss or competing"], events.append, events.append
    )
    assert status == 0, outcomes
    assert isinstance(events[0], int) and events[0] == len(outcomes) > 1
    assert all(isinstance(e, Outcome) for e in events[1:])
    names = [(o.promise, o.test) for o in outcomes]
    assert len(names) == len(set(names))
    assert not any(url in part or "socket_timeout" in part for part in commands[0])
    assert _keys(redis_client) <= before


def test_bench_cleans_up_its_keys(
    redis_target: RedisTarget, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _keys(redis_client)
    url = redis_target.url("redis+stream")
    assert run(["bench", url, "--count", "50", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]
    assert _keys(redis_client) <= before


def test_check_on_memory_streams_lines(tmp_path: Path) -> None:
    with brokerkit_child("check", "memory://", "-k", "no_loss") as child:
        out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    assert "pass" in err and "passed" in out


def test_check_names_each_promise_in_its_own_words_once() -> None:
    """A row per test, in the words of the test's docstring (apostrophes kept), and
    a parametrized test's cases told apart by their parameters."""
    rows: list[str] = []
    status, _ = run_contracts(
        "memory://",
        ["-k", "purge_removes_only or pattern_glob_syntax"],
        on_outcome=lambda outcome: rows.append(outcome.described()),
    )
    assert status == 0
    assert "purge(topic) removes that topic's waiting messages only." in rows
    globs = [row for row in rows if row.startswith("Pattern subscriptions follow")]
    assert len(globs) > 1 and all(row.endswith("]") for row in globs)
    assert len(rows) == len(set(rows))


def test_a_deeply_nested_json_body_is_a_clear_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    deep = "[" * 5000 + "]" * 5000
    assert run(["publish", "memory://", "t", deep, "--json"]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err
    assert "RecursionError" not in err
