"""``--help`` shows each paragraph of a command's help as one paragraph that rich wraps
to the terminal (review 29 of the command line). typer's rich help kept the line
breaks of the docstring inside a paragraph, so the text was ragged at any width but
the source's, and a command's summary in ``brokerkit --help`` broke mid-sentence
("dead letters," / "oldest waiting.") however wide the terminal."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

typer = pytest.importorskip("typer")

from brokerkit.cli._app import build_app  # noqa: E402

#: Wide enough for every paragraph to fit on one line.
WIDE = "1000"


def _help(*argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "brokerkit.cli", *argv, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": WIDE, "TERMINAL_WIDTH": WIDE},
        check=True,
    )
    return [" ".join(line.strip(" │").split()) for line in done.stdout.splitlines()]


def _paragraphs(doc: str | None) -> list[str]:
    return [" ".join(p.split()) for p in inspect.cleandoc(doc or "").split("\n\n") if p]


def test_every_paragraph_of_a_command_help_is_one_line_on_a_wide_terminal() -> None:
    group = typer.main.get_command(build_app())
    for name, command in group.commands.items():
        lines = _help(name)
        for paragraph in _paragraphs(command.help):
            assert paragraph in lines, f"'brokerkit {name} --help' breaks {paragraph!r}"


def test_the_command_list_shows_each_summary_on_one_line() -> None:
    lines = _help()
    group = typer.main.get_command(build_app())
    for name, command in group.commands.items():
        summary = _paragraphs(command.help)[0]
        assert any(line == f"{name} {summary}" for line in lines), (name, summary)
