"""The ``brokerkit`` command, run in-process against a named memory broker that the
test holds open (so that every command's connection shares its store)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import brokerkit
from brokerkit.cli import main
from brokerkit.cli._app import run
from brokerkit.cli._check import Outcome, promise_of
from brokerkit.cli._output import redact
from tests.conftest import RedisTarget

pytest.importorskip("typer")


def test_backends_lists_memory_with_its_capabilities(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    memory = next(r for r in rows if "memory" in r["schemes"])
    assert memory["plugin"] == "brokerkit.backends.memory"
    assert "FANOUT" in memory["capabilities"]
    assert {"redis+list", "redis+stream", "redis+pubsub"} <= {s for r in rows for s in r["schemes"]}


def test_publish_prints_ids_and_sends_headers(
    shared: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = shared
    assert run(["publish", url, "orders", "hello", "-H", "trace-id=abc", "--count", "3"]) == 0
    captured = capsys.readouterr()
    ids = captured.out.split()
    assert len(ids) == 3
    assert "published 3 messages" in captured.err
    got = list(broker.consume("orders", timeout=0))
    assert [d.id for d in got] == ids
    assert all(d.body == "hello" and d.headers == {"trace-id": "abc"} for d in got)


def test_publish_json_body_and_stdin_lines(
    shared: tuple[str, brokerkit.Broker],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, broker = shared
    assert run(["publish", url, "orders", '{"orderId": 1}', "--json"]) == 0
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("first\nsecond\n"))
    assert run(["publish", url, "orders", "-"]) == 0
    assert len(capsys.readouterr().out.split()) == 3
    bodies = [d.body for d in broker.consume("orders", timeout=0)]
    assert bodies == [{"orderId": 1}, "first", "second"]


@pytest.mark.parametrize("bad_line", [3, 503])
def test_publish_json_stdin_says_what_went_out_before_a_bad_line(
    shared: tuple[str, brokerkit.Broker],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    bad_line: int,
) -> None:
    """A bad line before anything went out is a usage error (2); one after a first
    batch went out is an error (1) that says how many were published."""
    url, broker = shared
    lines = [json.dumps(n) for n in range(1, bad_line)] + ["{bad", "7"]
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("\n".join(lines) + "\n"))
    status = run(["publish", url, "orders", "-", "--json"])
    captured = capsys.readouterr()
    published = broker.inspect("orders").length
    assert len(captured.out.split()) == published
    assert f"line {bad_line} of stdin" in captured.err
    if bad_line < 500:
        assert (status, published) == (2, 0)
    else:
        assert (status, published) == (1, 500)
        assert "the 500 message(s) read before it were published" in captured.err


def test_consume_acks_what_it_prints(
    shared: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = shared
    broker.publish_many("orders", ["a", "b", "c"])
    assert run(["consume", url, "orders", "--count", "2", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["body"] for r in records] == ["a", "b"]
    assert records[0]["attempt"] == 1
    # The two printed were acked; only "c" is left.
    assert [d.body for d in broker.consume("orders", timeout=0)] == ["c"]


def test_consume_no_ack_hands_messages_back(
    shared: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = shared
    broker.publish_many("orders", ["a", "b"])
    assert run(["consume", url, "orders", "--no-ack", "--timeout", "0.2"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["a", "b"]
    assert "handed 2 back" in captured.err
    again = list(broker.consume("orders", timeout=0))
    assert [(d.body, d.attempt) for d in again] == [("a", 2), ("b", 2)]


def test_consume_as_a_group(
    shared: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = shared
    broker.publish("orders", "x")
    assert run(["consume", url, "orders", "--group", "email", "--timeout", "0.1"]) == 0
    assert run(["consume", url, "orders", "--group", "sms", "--timeout", "0.1"]) == 0
    assert capsys.readouterr().out.splitlines() == ["x", "x"]


def test_inspect_json_and_table(
    shared: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = shared
    broker.publish_many("orders", [1, 2, 3])
    broker.publish("orders", "later", delay=3600)
    subscription = broker.subscribe("orders", group="email")
    assert subscription.receive(timeout=1) is not None
    assert run(["inspect", url, "orders", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["length"] == 3
    assert info["in_flight"] == 1
    assert info["scheduled"] == 1
    assert info["groups"][0]["name"] == "email"
    assert run(["inspect", url, "orders"]) == 0
    table = capsys.readouterr().out
    assert "in flight" in table
    assert "scheduled" in table
    assert "email" in table


def test_rescue_on_a_backend_without_one_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["rescue", "memory://", "orders"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("brokerkit: error: memory has no public rescue step")
    assert "comes back by itself once its visibility timeout runs out" in error
    assert "Traceback" not in error


def test_rescue_on_a_backend_without_ack_says_nothing_comes_back(
    capsys: pytest.CaptureFixture[str], redis_target: RedisTarget
) -> None:
    assert run(["rescue", redis_target.url("redis+pubsub"), "orders"]) == 1
    error = " ".join(capsys.readouterr().err.split())
    assert "has no public rescue step" in error
    assert "keeps no deliveries to come back (no ACK" in error


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["publish", "redis://h/0", "t", "x"], "redis+stream"),
        (["publish", "nosuch://", "t", "x"], "no backend is installed"),
        (["publish", "memory://", "bad topic", "x"], "invalid topic"),
        (["consume", "memory://?visibility_timout=3", "t"], "did you mean 'visibility_timeout'"),
    ],
)
def test_errors_are_one_line_with_a_non_zero_status(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("brokerkit: error: ")
    assert expected in lines[0]


def test_a_password_never_appears_in_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["publish", "nosuch://user:s3cret@host/0", "t", "x"]) == 1
    assert run(["inspect", "memory://user:s3cret@/?nope=1", "t"]) == 1
    captured = capsys.readouterr()
    assert "s3cret" not in captured.err + captured.out


def test_redact_masks_passwords_of_the_arguments() -> None:
    text = "failed to reach redis://u:hunter2@h:6379/0 (hunter2)"
    assert "hunter2" not in redact(text, ["consume", "redis+list://u:hunter2@h:6379/0"])


def test_usage_error_exits_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["publish", "memory://", "t", "x", "--header", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_main_exits_with_the_status() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["rescue", "memory://", "t"])
    assert exit_info.value.code == 1


def test_demo_command_reconciles(tmp_path: pytest.TempPathFactory) -> None:
    chart = tmp_path / "sale.svg"  # type: ignore[operator]
    status = run(
        ["demo", "--orders", "2", "--sale-orders", "150", "--speed", "0.02", "--plot", str(chart)]
    )
    assert status == 0
    assert chart.read_text().startswith("<svg")


def test_bench_command_on_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["bench", "memory://", "--count", "200", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    steps = {r["step"]: r for r in report["results"]}
    assert set(steps) == {
        "publish",
        "publish_many",
        "consume_ack_p1",
        "consume_ack_p100",
        "latency",
    }
    assert steps["latency"]["p50_ms"] <= steps["latency"]["p99_ms"]


def test_missing_cli_extra_gives_a_hint() -> None:
    code = (
        "import sys; sys.modules['typer'] = None\n"
        "from brokerkit.cli import main\n"
        "main(['backends'])\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 2
    assert 'pip install "pybrokerkit[cli]"' in completed.stderr
    assert "Traceback" not in completed.stderr


def test_plugin_commands_are_added(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import brokerkit.cli._app as app_module

    class Plugin:
        @brokerkit.hookimpl
        def brokerkit_register_commands(self, cli: object) -> None:
            @cli.command("hello")  # type: ignore[attr-defined, untyped-decorator]
            def hello() -> None:
                print("hello from a plugin")

    original = app_module.plugin_manager

    def manager() -> object:
        pm = original(entry_points=False)
        pm.register(Plugin(), name="test-plugin")
        return pm

    monkeypatch.setattr(app_module, "plugin_manager", manager)
    assert run(["hello"]) == 0
    assert capsys.readouterr().out == "hello from a plugin\n"


def test_promise_of_a_test_name() -> None:
    assert promise_of("test_no_loss[memory://]") == "no loss"
    assert promise_of("test_fifo_for_one_consumer") == "fifo for one consumer"


def test_an_outcome_is_described_by_its_docstring_and_its_parameters() -> None:
    plain = Outcome("TestContract", "test_no_loss", "pass", statement="Nothing is lost.")
    case = Outcome("TestContract", "test_glob[room:*-True]", "pass", statement="Globs match.")
    unwritten = Outcome("TestContract", "test_fifo[x]", "pass")
    assert plain.described() == "Nothing is lost."
    assert case.described() == "Globs match. [room:*-True]"
    assert unwritten.described() == "fifo [x]"


def test_redact_masks_a_nats_token_and_keeps_a_user_name() -> None:
    """A NATS URL's lone user part is its token, a secret; Redis's is a user name."""
    text = "driver said: auth failed for T0kenXyz, user alice"
    masked = redact(text, ["consume", "nats://T0kenXyz@h:4222", "redis+list://alice@h:6379/0"])
    assert "T0kenXyz" not in masked and "alice" in masked
