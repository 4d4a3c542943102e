"""What the ``brokerkit`` command masks in its errors (the twenty-seventh review): what
follows a secret query option (it may be the end of the secret, split at a raw '&'), a
secret as its author percent-encoded it, and a secret that is a common word, which no
longer mangles the masked URL that the message shows. Run through the real command,
on a private redis-server (and a private sentinel)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

import pytest
import redis
import typer

import brokerkit
from brokerkit.cli._app import run
from brokerkit.cli._output import redact
from tests.redis_cluster import _Sentinel
from tests.redis_server import RedisServer, _free_port

pytest.importorskip("typer")

_COMMAND = "import sys; from brokerkit.cli._app import run; sys.exit(run(sys.argv[1:]))"


def brokerkit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``brokerkit`` command in a process of its own, as a shell runs it."""
    return subprocess.run(
        [sys.executable, "-c", _COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def sentinel() -> Iterator[int]:
    """The port of a private sentinel watching a private redis-server as ``bkm``."""
    with RedisServer() as master:
        watcher = _Sentinel("bkm", master.port)
        watcher.start()
        try:
            client = redis.Redis(port=watcher.port, socket_timeout=5)
            for _ in range(200):  # until it answers (it is a process just started)
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            yield watcher.port
        finally:
            watcher.stop()


@pytest.fixture(scope="module")
def locked() -> Iterator[RedisServer]:
    """A private redis-server whose password is none of those the tests give."""
    with RedisServer() as server:
        server.client().config_set("requirepass", "the-right-one")
        yield server


# -- what follows a secret query option ---------------------------------------------------


def test_the_cli_masks_what_follows_a_secret_in_the_query(sentinel: int) -> None:
    # "Tr0ub&sentinel=3xTAIL" may be one password written unencoded: the master name
    # read from its tail must not be shown (it was, in "know no master '3xTAIL'")
    url = f"redis+stream://127.0.0.1:{sentinel}/0?sentinel_password=Tr0ub&sentinel=3xTAIL"
    done = brokerkit_cli("inspect", url, "orders")
    assert done.returncode == 1, done
    assert "brokerkit: error: " in done.stderr, done.stderr
    assert "Tr0ub" not in done.stderr and "3xTAIL" not in done.stderr, done.stderr
    assert "sentinel_password=***" in done.stderr, done.stderr


def test_the_cli_masks_a_secret_tail_taken_from_brokerkit_url(
    sentinel: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis+stream://127.0.0.1:{sentinel}/0?sentinel_password=Tr0ub&sentinel=3xTAIL"
    monkeypatch.setenv("BROKERKIT_URL", url)
    assert run(["inspect", "orders"]) == 1
    error = capsys.readouterr().err
    assert "Tr0ub" not in error and "3xTAIL" not in error, error


@pytest.fixture
def leaky_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin command ``leak URL`` whose error quotes the URL's query as written and
    each of its values, as a driver might."""
    import brokerkit.cli._app as app_module
    from brokerkit._plugins import plugin_manager

    class Plugin:
        @brokerkit.hookimpl
        def brokerkit_register_commands(self, cli: Any) -> None:
            @cli.command("leak")  # type: ignore[untyped-decorator]
            def leak(url: Annotated[str, typer.Argument()]) -> None:
                parsed = brokerkit.BrokerURL.parse(url)
                raise brokerkit.BrokerError(
                    f"query {url.partition('?')[2]!r}; values {list(parsed.query.values())}"
                )

    def manager() -> object:
        pm = plugin_manager(entry_points=False)
        pm.register(Plugin(), name="leaky-plugin-27")
        return pm

    monkeypatch.setattr(app_module, "plugin_manager", manager)


@pytest.mark.parametrize(
    ("query", "hidden"),
    [
        ("sentinel=m&sentinel_password=hunt%65r2", ["hunt%65r2", "hunter2"]),
        ("token=h%75nter2&e=3xTAIL", ["h%75nter2", "hunter2", "3xTAIL"]),
        ("sentinel=m&sentinel_password=Tr0ub&prefix=3xTAIL&db=9q", ["Tr0ub", "3xTAIL", "db=9q"]),
        ("token=a&client_secret=b", ["'a'", "'b'"]),  # a short secret value: masked all the same
        ("client_secret=a%2fb&x=1", ["a%2fb", "a/b"]),
    ],
)
def test_a_plugin_error_shows_no_secret_as_written_nor_its_tail(
    leaky_plugin: None, capsys: pytest.CaptureFixture[str], query: str, hidden: list[str]
) -> None:
    assert run(["leak", f"redis+stream://h/0?{query}"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("brokerkit: error: query '"), error
    assert not [part for part in hidden if part in error], error


# -- a secret that is a common word --------------------------------------------------------


@pytest.mark.parametrize("password", ["redis", "stream", "127", "0", "guest"])
def test_a_common_word_password_leaves_the_masked_url_whole(
    locked: RedisServer, password: str
) -> None:
    url = f"redis+stream://:{quote(password, safe='')}@127.0.0.1:{locked.port}/0"
    done = brokerkit_cli("inspect", url, "orders")
    assert done.returncode == 1, done
    masked = f"redis+stream://:***@127.0.0.1:{locked.port}/0"
    assert masked in done.stderr, done.stderr  # was '***+stream://', '***.0.0.1'...
    assert "refused the credentials" in done.stderr, done.stderr
    assert password not in done.stderr.replace(masked, ""), done.stderr


def test_a_short_value_after_a_secret_is_masked_as_name_and_value_only() -> None:
    # one that is long enough is masked wherever it appears; a short one ("1", "0")
    # would mask every digit of "127.0.0.1": it is masked where it reads "db=1"
    url = "redis+stream://h/0?sentinel=m&sentinel_password=Tr0ub&db=1&client_name=3xTAIL"
    text = "at 127.0.0.1:6379 with db=1, client 3xTAIL, Tr0ub&db=1"
    assert redact(text, [url]) == "at 127.0.0.1:6379 with ***, client ***, ***"


def test_a_common_word_secret_is_masked_outside_the_url() -> None:
    url = "redis+stream://:redis@h:6379/0"
    text = f"redis-py said: password redis refused for {url} (redis)"
    assert redact(text, [url]) == (
        "***-py said: password *** refused for redis+stream://:***@h:6379/0 (***)"
    )


# -- what a command writes on stderr besides its error line --------------------------------


def test_the_exporter_note_masks_what_follows_a_secret(sentinel: int) -> None:
    # "cannot reach <url> yet (<the driver's error>)" is printed by a thread of the
    # exporter while it serves: it went out unmasked ("know no master '3xTAIL'")
    url = f"redis+stream://127.0.0.1:{sentinel}/0?sentinel_password=Tr0ub&sentinel=3xTAIL"
    port = str(_free_port())
    exporter = subprocess.Popen(
        [sys.executable, "-c", _COMMAND, "exporter", url, "--address", "127.0.0.1", "--port", port],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert exporter.stderr is not None
        lines = [exporter.stderr.readline() for _ in range(2)]
    finally:
        exporter.terminate()
        exporter.wait(30)
    assert any("cannot reach" in line for line in lines), lines
    assert not [line for line in lines if "Tr0ub" in line or "3xTAIL" in line], lines


def test_stderr_masking_writes_past_the_proxy_of_a_progress_bar(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # while a progress bar is live on a terminal, rich puts in sys.stderr a proxy that
    # prints each line on err: err must write to the file behind it, not back to it
    from rich.file_proxy import FileProxy

    from brokerkit.cli._output import err, hide_secrets_of

    forget = hide_secrets_of(["redis+stream://:Pw9x@h/0"])
    try:
        monkeypatch.setattr(sys, "stderr", FileProxy(err, sys.stderr))
        sys.stderr.write("a driver said Pw9x\n")
        err.print("and a note: Pw9x")
    finally:
        forget()
    captured = capsys.readouterr().err
    assert "a driver said ***" in captured and "and a note: ***" in captured, captured
    assert "Pw9x" not in captured, captured


def test_a_command_forgets_its_secrets_when_it_ends(capsys: pytest.CaptureFixture[str]) -> None:
    # a usage error included: the secrets of one command do not mask what the next says
    from brokerkit.cli import _output

    run(["inspect", "redis+stream://:Pw9x@127.0.0.1:1/0", "--bogus"])
    run(["inspect", "redis+stream://:Pw9x@127.0.0.1:1/0", "orders"])
    run(["inspect", "--help"])
    capsys.readouterr()
    assert _output._HIDDEN == []
