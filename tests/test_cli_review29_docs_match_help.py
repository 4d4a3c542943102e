"""docs/cli.md names every option of every built-in command (review 29 of the command
line): its table of commands left out ``dlq --wait``, ``top --topic``, ``worker
--interval``, ``check --verbose`` and the demo's ``--orders``, ``--sale-orders`` and
``--speed``, which ``--help`` shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

typer = pytest.importorskip("typer")

from brokerkit.cli._app import build_app  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _rows() -> dict[str, str]:
    """Each command's row of the table of commands in docs/cli.md."""
    text = DOC.read_text(encoding="utf-8")
    return {m[1]: m[0] for m in re.finditer(r"^\| `brokerkit ([a-z]+)[^\n]*", text, re.M)}


def test_every_option_of_every_command_is_in_its_row_of_the_docs() -> None:
    rows = _rows()
    group = typer.main.get_command(build_app())
    missing: dict[str, list[str]] = {}
    for name, command in group.commands.items():
        row = rows.get(name)
        assert row is not None, f"docs/cli.md has no row for 'brokerkit {name}'"
        options = [o for p in command.params for o in p.opts if o.startswith("--")]
        gone = [o for o in options if not re.search(re.escape(o) + r"(?![\w-])", row)]
        if gone:
            missing[name] = gone
    assert not missing, f"options --help shows that docs/cli.md does not name: {missing}"
