"""The README's two set-up commands, and the install lines of the quickstart and the
demo page, name only what the project has: extras, dependency groups, paths, the
``brokerkit`` command and its sub-commands, and the pip that reads ``--group``.

Running them takes a fresh virtual environment and minutes of installing (the docs
review does that by hand); this checks, in milliseconds, that no edit of pyproject.toml
or of the pages left one naming an extra, a group or a path that is gone.
"""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest

from brokerkit.cli._app import build_app

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])
GROUPS = set(PYPROJECT["dependency-groups"])
COMMANDS = {
    command.name or command.callback.__name__ for command in build_app().registered_commands
}
_SETUP = re.compile(r"<!-- setup:(\w+) -->\n```sh\n(.*?)\n```", re.DOTALL)
_SH = re.compile(r"```sh\n(.*?)```", re.DOTALL)


def _setup_commands() -> dict[str, str]:
    return dict(_SETUP.findall((ROOT / "README.md").read_text()))


def _steps(command: str) -> list[list[str]]:
    return [shlex.split(step) for step in command.split("&&")]


def _check_pip_install(words: list[str], command: str) -> None:
    for before, word in itertools.pairwise(words[1:]):
        if word.startswith("-") or word.startswith("pip") or before == "--group":
            continue
        name, _, extras = word.partition("[")
        if extras:
            unknown = set(extras.rstrip("]").split(",")) - EXTRAS
            assert not unknown, f"{command!r} installs extras pyproject.toml lacks: {unknown}"
        if name in (".", "") or name.startswith("./"):
            assert (ROOT / name / "pyproject.toml").is_file(), f"{command!r}: no project at {name}"
        else:
            assert name == "pybrokerkit", f"{command!r} installs {name!r}, not pybrokerkit"
    if "--group" in words:
        group = words[words.index("--group") + 1]
        assert group in GROUPS, f"{command!r}: pyproject.toml has no dependency group {group!r}"


def _check(command: str) -> None:
    pip_upgraded = False
    for words in _steps(command):
        if words[:3] == ["pip", "install", "-U"]:
            pip_upgraded = words[3:] == ["pip>=25.1"]
        elif words[:2] == ["pip", "install"]:
            if "--group" in words:
                assert pip_upgraded, f"{command!r}: --group needs pip 25.1, upgrade pip first"
            _check_pip_install(words, command)
        elif words[0] == "brokerkit":
            assert PYPROJECT["project"]["scripts"]["brokerkit"] == "brokerkit.cli:main"
            assert words[1] in COMMANDS, f"{command!r}: brokerkit has no command {words[1]!r}"


def test_the_readme_has_both_setup_commands() -> None:
    commands = _setup_commands()
    assert set(commands) == {"demo", "test"}
    assert commands["demo"].endswith("&& brokerkit demo")
    assert commands["test"].endswith("&& pytest")
    assert _steps(commands["test"])[0] == ["python3", "-m", "venv", ".venv"]


@pytest.mark.parametrize("which", ["demo", "test"])
def test_a_setup_command_names_what_the_project_has(which: str) -> None:
    _check(_setup_commands()[which])


def test_the_test_group_brings_what_pytest_is_configured_to_use() -> None:
    """``pytest`` alone runs with the addopts and ini options of pyproject.toml: those
    need pytest-xdist (``-n auto``) and pytest-timeout (``timeout``) from the group."""
    group = " ".join(str(item) for item in PYPROJECT["dependency-groups"]["test"])
    options = PYPROJECT["tool"]["pytest"]["ini_options"]
    assert "-n" in options["addopts"] and "pytest-xdist" in group
    assert "timeout" in options and "pytest-timeout" in group
    assert "contracts" in group  # pytest and hypothesis


@pytest.mark.parametrize("page", ["docs/quickstart.md", "docs/demo.md"])
def test_the_install_lines_of_a_page_name_what_the_project_has(page: str) -> None:
    lines = [
        line.split("#", 1)[0].strip()
        for block in _SH.findall((ROOT / page).read_text())
        for line in block.splitlines()
    ]
    assert lines
    for line in filter(None, lines):
        _check(line)
