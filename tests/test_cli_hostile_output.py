"""What the ``brokerkit`` command shows of what it does not control: a driver's or a
plugin's error that quotes a URL's secrets, control sequences in a dead letter or in a
server's group and consumer names, handler names that look like rich markup, and a
bench size or step that cannot be run."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
import typer
from rich.console import Console

import brokerkit
from brokerkit.cli._app import run
from brokerkit.cli._output import cell, redact, visible
from brokerkit.cli._tools import MAX_BENCH_SIZE
from brokerkit.cli._url import URL_ENV
from brokerkit.cli._worker import _Display
from tests.conftest import RedisTarget

pytest.importorskip("typer")

#: Clears the screen, sets the window title, starts red text, and a C1 CSI.
HOSTILE = "hi\x1b[2J\x1b]0;PWNED\x07\x1b[31mred\x9b1m\x7f [bold]b[/bold] x[/y]"


@pytest.fixture
def held() -> Iterator[tuple[str, brokerkit.Broker]]:
    """A memory broker of this test's own, held open so that commands share it."""
    url = f"memory://hostile-{uuid.uuid4().hex}"
    with brokerkit.connect(url) as broker:
        yield url, broker


def column_texts(table: str) -> list[str]:
    """The text of each column of a one-row table as printed, its cell's lines joined
    again (wherever the terminal's width folded it) and its spaces dropped."""
    columns: list[str] = []
    for line in table.splitlines():
        if "│" not in line:
            continue
        pieces = line.split("│")[1:-1]
        columns += [""] * (len(pieces) - len(columns))
        for index, piece in enumerate(pieces):
            columns[index] += unspaced(piece)
    return columns


def unspaced(text: str) -> str:
    return "".join(text.split())


def no_control_characters(text: str) -> bool:
    return not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in text)


# -- 1. redact: the secrets of a URL with a query string ------------------------------


@pytest.mark.parametrize(
    "argument",
    [
        "redis+stream://:s3cretpw@h/0?db=0",
        "redis+stream://app:s3cretpw@h:6379/0?socket_timeout=5&client_name=me",
        "--url=redis+stream://:s3cretpw@h/0?db=0",
        "redis+stream://h/0?sentinel=m&sentinel_password=s3cretpw",
        "nats://h:4222?token=s3cretpw",
    ],
)
def test_redact_masks_every_secret_of_a_url_with_a_query(argument: str) -> None:
    url = argument.partition("=")[2] if argument.startswith("--") else argument
    text = f"driver said: bad password s3cretpw for {url}"
    masked = redact(text, ["consume", argument, "orders"])
    assert "s3cretpw" not in masked
    assert "***" in masked


def test_redact_masks_a_secret_as_decoded_and_as_percent_encoded() -> None:
    argument = "redis+stream://:pa%2Fss@h/0?sentinel=m&sentinel_password=hu%26nter&token=t%20k"
    text = "pa/ss pa%2Fss hu&nter hu%26nter t k t%20k t+k; db=0 and sentinel=m stay"
    masked = redact(text, [argument])
    for secret in ("pa/ss", "pa%2Fss", "hu&nter", "hu%26nter", "t k", "t%20k", "t+k"):
        assert secret not in masked
    assert "db=0 and sentinel=m stay" in masked


def test_redact_leaves_a_url_without_secrets_and_other_arguments_alone() -> None:
    text = "failed: redis+stream://h/0?db=0 orders"
    assert redact(text, ["redis+stream://h/0?db=0", "orders", "--count=3"]) == text


@pytest.fixture
def leaky_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin command ``leak [URL]`` whose error quotes the URL's secrets (its own, or
    BROKERKIT_URL's), as a driver might."""
    import brokerkit.cli._app as app_module
    from brokerkit._plugins import plugin_manager

    class Plugin:
        @brokerkit.hookimpl
        def brokerkit_register_commands(self, cli: Any) -> None:
            @cli.command("leak")  # type: ignore[untyped-decorator]
            def leak(url: Annotated[str, typer.Argument()] = "") -> None:
                import os

                parsed = brokerkit.BrokerURL.parse(url or os.environ[URL_ENV])
                raise brokerkit.BrokerError(
                    f"auth failed for {parsed.password} with "
                    f"{parsed.query.get('sentinel_password')} at "
                    f"{parsed.render(hide_password=False)}"
                )

    def manager() -> object:
        pm = plugin_manager(entry_points=False)
        pm.register(Plugin(), name="leaky-plugin")
        return pm

    monkeypatch.setattr(app_module, "plugin_manager", manager)


SECRET_URL = "redis+stream://:s3cretpw@localhost/0?sentinel=m&sentinel_password=hunter2&db=0"


def test_a_plugin_error_never_shows_the_secrets_of_a_url_with_a_query(
    leaky_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["leak", SECRET_URL]) == 1
    error = capsys.readouterr().err
    assert error.startswith("brokerkit: error: auth failed for ***")
    assert "s3cretpw" not in error and "hunter2" not in error


def test_a_plugin_error_never_shows_the_secrets_of_brokerkit_url(
    leaky_plugin: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_ENV, SECRET_URL)
    assert run(["leak"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("brokerkit: error: auth failed for ***")
    assert "s3cretpw" not in error and "hunter2" not in error


# -- 2. control sequences and markup from messages and servers --------------------------


def test_visible_escapes_c0_del_and_c1_and_nothing_else() -> None:
    assert visible("a\x1b[2J\x07\x00\x7f\x9b\x85\n\t\r é ✓ [b]") == (
        "a\\x1b[2J\\x07\\x00\\x7f\\x9b\\x85\\n\\t\\r é ✓ [b]"
    )
    assert cell("x[/y]") == "x\\[/y]"


def test_dlq_table_shows_control_sequences_escaped_and_json_as_is(
    held: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = held
    reason = "boom \x1b[31mRED\x1b]8;;http://evil/\x1b\\link"
    with broker.subscribe("orders", group="g") as subscription:
        broker.publish("orders", HOSTILE)
        delivery = subscription.receive(10)
        assert delivery is not None
        broker.nack(delivery, requeue=False, reason=reason)
    assert run(["dlq", url, "orders"]) == 0
    table = capsys.readouterr().out
    assert no_control_characters(table), [line for line in table.splitlines() if "\x1b" in line]
    cells = column_texts(table)
    # What the data holds, control characters as escapes and markup as written.
    assert unspaced(visible(reason)) in cells
    assert unspaced(visible(HOSTILE)) in cells
    assert "\\x1b[2J" in cells[-1] and "[bold]b[/bold]" in cells[-1]
    assert run(["dlq", url, "orders", "--json"]) == 0
    (letter,) = json.loads(capsys.readouterr().out)
    assert letter["body"] == HOSTILE
    assert letter["reason"] == reason


def test_inspect_shows_hostile_group_and_consumer_names_of_the_server_escaped(
    redis_target: RedisTarget, redis_client: Any, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another program made a group and a consumer whose names hold control sequences:
    the server reports them, and the table shows them escaped."""
    url = redis_target.url("redis+stream", prefix=prefix)
    with brokerkit.connect(url) as broker:
        broker.publish("orders", "x")
    key = f"{prefix}:{{orders}}"
    group, consumer = "g\x1b]0;PWNED\x07", "c\x1b[2J\x9b[/x]"
    redis_client.xgroup_create(key, group, id="0")
    redis_client.xreadgroup(group, consumer, {key: ">"})
    assert run(["inspect", url, "orders"]) == 0
    table = capsys.readouterr().out
    assert no_control_characters(table)
    assert "g\\x1b]0;PWNED\\x07" in table
    assert "c\\x1b[2J\\x9b[/x]" in table
    assert run(["inspect", url, "orders", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)["groups"]
    assert shown["name"] == group
    assert shown["consumers"][0]["name"] == consumer


def test_worker_live_table_shows_markup_and_control_characters_as_written() -> None:
    worker = brokerkit.Worker()

    @worker.handler("orders", name="x[/y] \x1b[2J")
    def handle(message: Any) -> None:
        pass

    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(_Display(worker, live=True, interval=1.0)._table())
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "x[/y] \\x1b[2J" in shown
    assert no_control_characters(shown)


# -- 3. bench: a size or a step it cannot run is a usage error ---------------------------


@pytest.mark.parametrize("size", [str(MAX_BENCH_SIZE + 1), str(2**40), "99999999999999999999"])
def test_bench_huge_size_is_usage_error(size: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["bench", "memory://", "--size", size, "--count", "1"]) == 2
    error = capsys.readouterr().err
    assert "unexpected" not in error
    assert "--size" in error and f"at most {MAX_BENCH_SIZE} bytes" in error


def test_bench_unknown_step_is_usage_error_naming_the_steps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["bench", "memory://", "--step", "publish", "--step", "nope"]) == 2
    error = capsys.readouterr().err
    assert "--step" in error and "'nope'" in error
    assert "the steps are publish, publish_many, consume_ack_p1" in error


def test_an_error_from_a_driver_cannot_drive_the_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A server's or a driver's error text goes to stderr with its control characters
    shown as escapes; a usage message keeps its line breaks."""
    from brokerkit.cli._app import _fail

    _fail("server said: \x1b]0;PWNED\x07 then \x1b[2J\nsecond line", [])
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b]0;PWNED\\x07 then \\x1b[2J\nsecond line" in err
