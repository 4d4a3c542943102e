"""A command that takes a URL, then more arguments, says the URL is missing when it is
(review 36 of the command line). With ``BROKERKIT_URL`` unset or empty,
``brokerkit inspect foo`` said ``Missing argument 'topic'`` and
``brokerkit publish foo bar`` ``Invalid value for BODY: give a BODY...``: ``foo``, the
topic, was taken for the URL, and the error named the argument after it. Now both say
what ``brokerkit topics`` says, ``Missing argument 'URL'. Give it, or set
BROKERKIT_URL.``, and an empty ``BROKERKIT_URL`` is named as such (as
:func:`brokerkit.connect` refuses it, docs/concepts.md)."""

from __future__ import annotations

import pytest

typer = pytest.importorskip("typer")

from brokerkit.cli._app import build_app, run  # noqa: E402
from brokerkit.cli._url import URL_ENV, UrlFirstCommand  # noqa: E402


def _url_first_commands() -> dict[str, list[str]]:
    """Every command that takes the URL first, with the arguments that follow it (as
    their names): ``{"inspect": ["topic"], "topics": [], ...}``."""
    group = typer.main.get_command(build_app())
    found = {
        name: [p.name for p in command.params if p.param_type_name == "argument"][1:]
        for name, command in group.commands.items()
        if isinstance(command, UrlFirstCommand)
    }
    assert {"inspect", "publish", "consume", "dlq", "rescue", "topics"} <= set(found)
    return found


COMMANDS = _url_first_commands()


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    status = run(argv)
    return status, capsys.readouterr().err.strip()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_arguments_after_the_url_without_it_say_the_url_is_missing(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    rest = [f"word{i}" for i, _ in enumerate(COMMANDS[name])]  # a topic, a body...
    status, error = _error(capsys, [name, *rest])
    assert status == 2, error
    assert error == (
        f"brokerkit: error: Missing argument 'URL'. Give it, or set {URL_ENV}. "
        f"(see 'brokerkit {name} -h')"
    )


@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_empty_variable_is_named(
    name: str, value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_ENV, value)
    rest = [f"word{i}" for i, _ in enumerate(COMMANDS[name])]
    status, error = _error(capsys, [name, *rest])
    assert status == 2, error
    assert error == (
        f"brokerkit: error: Missing argument 'URL'. Give it, or set {URL_ENV}, which is "
        f"set but empty. (see 'brokerkit {name} -h')"
    )


def test_help_still_shows_without_a_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    assert run(["inspect", "orders", "-h"]) == 0
    assert "Usage: brokerkit inspect" in capsys.readouterr().out


def test_a_first_argument_that_is_no_url_with_all_the_others_is_refused_as_a_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    status, error = _error(capsys, ["inspect", "foo", "orders"])
    assert status == 1
    assert error.startswith("brokerkit: error: 'foo' is not a broker URL")


def test_the_variable_still_stands_in_for_the_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_ENV, "memory://")
    status, error = _error(capsys, ["inspect", "h36-missing-url-topic"])
    assert status == 1
    assert "not found" in error and "Missing argument" not in error


@pytest.mark.parametrize("name", sorted(n for n in COMMANDS if COMMANDS[n]))
def test_a_first_argument_with_a_colon_is_named_as_no_url(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``echo hi | brokerkit publish localhost:6379 orders``, a URL without its scheme,
    said only that the URL was missing (review 37): the argument taken for the topic
    is named."""
    monkeypatch.delenv(URL_ENV, raising=False)
    rest = [f"word{i}" for i, _ in enumerate(COMMANDS[name])]
    status, error = _error(capsys, [name, "localhost:6379", *rest[1:]])
    assert status == 2, error
    assert error == (
        "brokerkit: error: Missing argument 'URL' ('localhost:6379' is not a broker URL: "
        "it needs a scheme and '://', as in 'redis+stream://localhost:6379/0'). Give it, "
        f"or set {URL_ENV}. (see 'brokerkit {name} -h')"
    )
