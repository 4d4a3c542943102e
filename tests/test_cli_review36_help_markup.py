"""``--help`` shows no reStructuredText (review 36 of the command line): a command's
docstring is its help, and ``brokerkit --help`` and ``brokerkit exporter -h`` printed
"read with ``inspect`` on every scrape" with the double backticks, as did
``consume -h`` ("as ``body_raw`` or ``body_base64``"). A plugin command's docstring
written for Sphinx is shown plain as well."""

from __future__ import annotations

from typing import Annotated

import pytest

typer = pytest.importorskip("typer")

from brokerkit.cli._app import _unwrap_help, build_app, run  # noqa: E402


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert run([*argv, "--help"]) == 0
    return " ".join(capsys.readouterr().out.replace("\u2502", " ").split())


def test_no_help_shows_double_backticks(capsys: pytest.CaptureFixture[str]) -> None:
    group = typer.main.get_command(build_app())
    shown = {"brokerkit": _help(capsys)}
    shown.update({name: _help(capsys, name) for name in group.commands})
    marked = sorted(name for name, text in shown.items() if "``" in text)
    assert not marked, f"--help shows reStructuredText literals: {marked}"
    assert "read with inspect on every scrape" in shown["exporter"]


def test_a_plugin_commands_sphinx_markup_is_shown_plain() -> None:
    app = typer.Typer()

    @app.command()
    def hello(
        mode: Annotated[
            str, typer.Option(help="Read with ``inspect``, see :func:`brokerkit.connect`.")
        ] = "",
    ) -> None:
        """Say ``hello`` through :class:`~brokerkit.Broker`.

        Then ``exit``.
        """

    command = typer.main.get_command(app)
    _unwrap_help(command)
    assert command.help == "Say hello through Broker.\n\nThen exit."
    (option,) = [p for p in command.params if p.name == "mode"]
    assert option.help == "Read with inspect, see brokerkit.connect."
