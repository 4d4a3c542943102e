"""Edges of ``brokerkit dlq``, ``consume``, ``publish`` and ``check``: dead letters on a
backend without REPLAY, bodies that stdout cannot take as they are, hostile headers,
signals in the middle of a move or a contract run, bad stdin, and the library's log."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("typer")

import brokerkit
from brokerkit._broker import Broker
from brokerkit.cli._app import run
from tests.conftest import RedisTarget
from tests.kombu_rabbitmq import kombu_broker, rabbitmq  # noqa: F401 (fixtures)
from tests.redis_server import RedisServer
from tests.waiting import wait_until


@pytest.fixture
def held() -> Iterator[tuple[str, brokerkit.Broker]]:
    """A memory broker of this test's own, held open so that commands share it."""
    url = f"memory://edges-{uuid.uuid4().hex}"
    with brokerkit.connect(url) as broker:
        yield url, broker


def dead_letter(
    broker: brokerkit.Broker,
    topic: str,
    bodies: list[Any],
    headers: list[dict[str, str]] | None = None,
) -> None:
    """Publish ``bodies`` to ``topic`` (with ``headers``, one mapping a body) and
    dead-letter them, read by a group that exists before they are published."""
    with broker.subscribe(topic, group="g") as subscription:
        for body, extra in zip(bodies, headers or [{}] * len(bodies), strict=True):
            broker.publish(topic, body, headers=extra)
        for _ in bodies:
            delivery = subscription.receive(10)
            assert delivery is not None
            delivery.nack(requeue=False)


# -- 1. kombu+amqp: the dead letters already there ------------------------------------


def test_dlq_on_kombu_amqp_lists_and_moves_the_dead_letters_already_there(
    kombu_broker: Callable[..., Any],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without REPLAY a new group sees only later messages: dlq reads the group the dead
    letters wait in, so it lists those already there, and what it moves leaves."""
    broker = kombu_broker()
    topic = "orders"
    dead_letter(broker, topic, ["a", "b", "c"])
    assert broker.inspect(topic).dead_lettered == 3
    url = f"{broker.url.render(hide_password=False)}?prefix={broker.options.prefix}"
    try:
        assert run(["dlq", url, topic, "--json", "--wait", "1"]) == 0
        assert sorted(d["body"] for d in json.loads(capsys.readouterr().out)) == ["a", "b", "c"]
        assert run(["dlq", url, topic, "--all", "--json", "--wait", "1"]) == 0
        assert "moved 3 of 3" in capsys.readouterr().err
        assert broker.inspect(topic).dead_lettered == 0
        assert run(["dlq", url, topic, "--json", "--wait", "1"]) == 0
        assert json.loads(capsys.readouterr().out) == []
    finally:
        # what the command declared, declared again by a broker the fixture cleans up
        kombu_broker().subscribe(broker.dead_letter_topic(topic)).close()


# -- 2. a lone surrogate in a JSON body -------------------------------------------------


def _envelope(number: int, payload: bytes, headers: str = "") -> bytes:
    extra = f',"h":{{{headers}}}' if headers else ""
    return (
        b'BK1{"id":"m%d","ct":"application/json","ts":1.5%s}\n' % (number, extra.encode()) + payload
    )


HOSTILE = b'{"name": "\\ud800"}'  # valid JSON: an escape that decodes to a lone surrogate


def test_consume_prints_a_body_holding_a_lone_surrogate_and_goes_on(
    redis_target: RedisTarget,
    redis_client: Any,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = redis_target.url("redis+list", prefix=prefix)
    queue = f"{prefix}:{{names}}"
    redis_client.lpush(
        queue, _envelope(1, HOSTILE), _envelope(2, b'{"name": "ok"}'), _envelope(3, b"[1]")
    )
    assert run(["consume", url, "names", "-n", "3", "-t", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ['{"name": "\\ud800"}', '{"name": "ok"}', "[1]"]
    assert redis_client.llen(queue) == 0

    redis_client.lpush(queue, _envelope(4, HOSTILE))
    assert run(["consume", url, "names", "-n", "1", "-t", "5", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["body"] == {"name": "\ud800"}  # valid JSON, the same value
    with brokerkit.connect(url) as broker:
        info = broker.inspect("names")
        assert (info.length, info.in_flight) == (0, 0)


@pytest.mark.parametrize("as_json", [False, True])
def test_dlq_lists_and_moves_past_a_body_holding_a_lone_surrogate(
    redis_target: RedisTarget,
    redis_client: Any,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    as_json: bool,
) -> None:
    url = redis_target.url("redis+list", prefix=prefix)
    with brokerkit.connect(url) as broker:
        dlq_key = broker.inspect("names.dlq").details["queue_key"]
        reason = '"x-original-topic":"names","x-dead-letter-reason":"rejected"'
        redis_client.lpush(
            dlq_key,
            _envelope(1, b'{"name": "ok1"}', reason),
            _envelope(2, HOSTILE, reason),
            _envelope(3, b'{"name": "ok3"}', reason),
        )
        listing = ["dlq", url, "names", "--wait", "0.5"] + (["--json"] if as_json else [])
        assert run(listing) == 0
        out = capsys.readouterr().out
        if as_json:
            assert [d["id"] for d in json.loads(out)] == ["m1", "m2", "m3"]
        else:
            assert "\\ud800" in out and "m3" in out
        # every one moves, as the bytes it was stored as: the hostile one too, which
        # JSON could not encode again (the serializer refuses a lone surrogate)
        assert run(["dlq", url, "names", "--all", "--wait", "0.5"]) == 0
        assert "moved 3 of 3" in capsys.readouterr().err
        assert redis_client.llen(dlq_key) == 0
        moved = {d.payload for d in broker.consume("names", timeout=0)}
        assert moved == {b'{"name": "ok1"}', HOSTILE, b'{"name": "ok3"}'}


# -- 3. a move count that is not ASCII digits -------------------------------------------


def test_dlq_moves_every_dead_letter_past_a_move_count_that_is_no_number(
    held: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = held
    moves = [{}, {"x-dlq-moves": "\u00b2"}, {"x-dlq-moves": "9" * 5000}]  # isdigit(), int() no
    dead_letter(broker, "jobs", ["first", "hostile", "third"], moves)
    assert run(["dlq", url, "jobs", "--all", "--json", "--wait", "0"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    back = {d.body: d.headers["x-dlq-moves"] for d in broker.consume("jobs", group="g", timeout=0)}
    assert back == {"first": "1", "hostile": "1", "third": "1"}


# -- 4. Ctrl-C in the middle of a move --------------------------------------------------


def test_ctrl_c_right_after_a_republish_never_leaves_a_message_moved_and_still_dead(
    redis_broker: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signal lands as the third republish returns (the handler in place is called
    there, as Python calls it when SIGINT arrives): that message is still acked in the
    dead-letter topic, the rest stay dead letters, none is in both places."""
    broker = redis_broker("redis+list")
    url = f"{broker.url.render(hide_password=False)}?prefix={broker.options.prefix}"
    n = 5
    dead_letter(broker, "jobs", [f"m{i}" for i in range(n)])
    real = Broker.publish
    calls = 0

    def publish(self: Broker, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        result = real(self, *args, **kwargs)
        calls += 1
        if calls == 3:
            handler = signal.getsignal(signal.SIGINT)
            assert callable(handler)
            handler(signal.SIGINT, None)
        return result

    monkeypatch.setattr(Broker, "publish", publish)
    assert run(["dlq", url, "jobs", "--all", "--json", "--wait", "0.5"]) == 130
    monkeypatch.setattr(Broker, "publish", real)
    capsys.readouterr()
    moved = broker.inspect("jobs").length
    dead = broker.inspect("jobs.dlq")
    assert moved == 3
    assert moved + dead.length + dead.in_flight == n


# -- 5. SIGINT or SIGTERM to `brokerkit check` alone ------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the child pytest through /proc")
@pytest.mark.timeout(300)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_check_alone_ends_its_child_and_deletes_its_keys(
    redis_server: RedisServer, tmp_path: Path, signum: int
) -> None:
    client = redis_server.client()
    log = (tmp_path / "stderr.txt").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "brokerkit.cli", "check", redis_server.url("redis+list")],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    children: list[int] = []
    try:
        wait_until(
            lambda: (
                next(client.scan_iter("brokerkit-check-*"), None) is not None
                or process.poll() is not None
            ),
            "the contract suite's first keys",
            within=120.0,
        )
        assert process.poll() is None, "check ended before any key was made"
        children = _children(process.pid)
        assert children, "no child pytest"
        process.send_signal(signum)
        process.wait(60)
        log.seek(0)
        assert process.returncode == 128 + signum, log.read()
        assert not [pid for pid in children if _running(pid)]
        assert list(client.scan_iter("brokerkit-check-*")) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in children:  # a child the old code left running
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        client.close()
        log.close()


# -- 6. a line of stdin that is not text ------------------------------------------------


@pytest.mark.parametrize("errors", ["strict", "surrogateescape"])
def test_publish_stdin_names_a_line_that_is_not_text_and_what_went_out_before(
    held: tuple[str, brokerkit.Broker],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    errors: str,
) -> None:
    url, broker = held
    data = b"".join(b"%d\n" % n for n in range(1, 601)) + b"bad \xff line\n"
    data += b"".join(b"%d\n" % n for n in range(700, 711))
    stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors=errors)
    monkeypatch.setattr(sys, "stdin", stdin)
    assert run(["publish", url, "numbers", "-"]) == 1
    captured = capsys.readouterr()
    assert "line 601 of stdin" in captured.err and "byte 0xff" in captured.err
    assert "the 500 message(s) read before it were published" in captured.err
    assert "none from line 501 on" in captured.err
    assert len(captured.out.split()) == broker.inspect("numbers").length == 500

    stdin = io.TextIOWrapper(io.BytesIO(b"\xff\nok\n"), encoding="utf-8", errors=errors)
    monkeypatch.setattr(sys, "stdin", stdin)
    assert run(["publish", url, "other", "-"]) == 2  # nothing went out: a usage error
    assert "line 1 of stdin" in capsys.readouterr().err
    assert broker.inspect("other").length == 0


# -- 7. the library's log lines ---------------------------------------------------------


def test_a_failed_nats_connection_is_one_line_on_stderr() -> None:
    pytest.importorskip("nats")
    command = [sys.executable, "-m", "brokerkit.cli", "inspect", "nats://127.0.0.1:1", "t"]
    env = {k: v for k, v in os.environ.items() if k != "BROKERKIT_DEBUG"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("brokerkit: error: ")
    # asked for, the driver's retries are there
    env["BROKERKIT_DEBUG"] = "1"
    debug = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert "WARNING brokerkit.nats" in debug.stderr


# -- lesser -----------------------------------------------------------------------------


def test_dlq_refuses_a_backend_without_dead_letters(
    redis_target: RedisTarget, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = redis_target.url("redis+pubsub", prefix=prefix)
    assert run(["dlq", url, "chat", "--wait", "0"]) == 1
    err = capsys.readouterr().err
    assert "DEAD_LETTER" in err and err.count("\n") == 1


def test_publish_count_out_of_range_is_a_usage_error(
    held: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = held
    assert run(["publish", url, "t", "x", "-n", "100000000000000000000"]) == 2
    assert "from 1 to 1,000,000" in capsys.readouterr().err
    assert run(["publish", url, "t", "x", "-n", "0"]) == 2
    assert "from 1 to 1,000,000" in capsys.readouterr().err
    assert broker.inspect("t").length == 0


def test_a_worker_module_that_configures_logging_gets_each_record_once() -> None:
    """The command's stderr handler steps aside once the program configures logging
    (a worker's module may, when the command imports it); before, each library
    warning was written twice."""
    script = textwrap.dedent(
        """
        import logging
        from brokerkit.cli._app import _library_logging

        with _library_logging(["worker", "app:worker"], False):
            logging.basicConfig(format="APP %(name)s: %(message)s")  # the import
            logging.getLogger("brokerkit.hooks").warning("a hook failed")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr.count("a hook failed") == 1
    assert "APP brokerkit.hooks: a hook failed" in done.stderr
