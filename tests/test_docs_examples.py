"""The code in the README, the quickstart and the delays page runs, as a reader would
paste it."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import brokerkit

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
_IMPORTS_BROKERKIT = re.compile(r"^(import brokerkit|from brokerkit[. ])", re.MULTILINE)


def _self_contained_blocks(*paths: str) -> list[tuple[str, str]]:
    """Python blocks that import brokerkit themselves (among the imports they start
    with) and need no server."""
    found = []
    for path in paths:
        text = (ROOT / path).read_text()
        for number, block in enumerate(_BLOCK.findall(text), 1):
            runnable = block.startswith("import ") and _IMPORTS_BROKERKIT.search(block)
            if runnable and 'connect("redis' not in block:
                found.append((f"{path}#{number}", block))
    return found


PAGES = (
    "README.md",
    "docs/quickstart.md",
    "docs/asyncio.md",
    "docs/delays.md",
    "docs/observability.md",
    "docs/workers.md",
)
BLOCKS = _self_contained_blocks(*PAGES)


def test_the_readme_and_quickstart_have_runnable_blocks() -> None:
    assert {name.split("#")[0] for name, _ in BLOCKS} == set(PAGES)


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_block_runs(name: str, code: str) -> None:
    namespace: dict[str, object] = {"__name__": name}
    exec(compile(code, name, "exec", dont_inherit=True), namespace)  # as pasted: no __future__
    for key, value in list(namespace.items()):
        if key.startswith("test_") and callable(value):
            value()  # a block that shows a test runs it


def test_package_docstring_example() -> None:
    failures, tried = doctest.testmod(brokerkit, verbose=False)
    assert tried > 0
    assert failures == 0


_BLOCK_AND_OUTPUT = re.compile(r"```python\n(.*?)```\n\n```text\n(.*?)```", re.DOTALL)


def _metric_examples() -> list[tuple[str, str, str]]:
    """(name, code, the output shown) of each runnable block whose output, shown right
    after it, is Prometheus series."""
    found = []
    for path in PAGES:
        text = (ROOT / path).read_text()
        for number, (code, shown) in enumerate(_BLOCK_AND_OUTPUT.findall(text), 1):
            if (path, code) in {(n.split("#")[0], c) for n, c in BLOCKS} and shown.startswith(
                "brokerkit_"
            ):
                found.append((f"{path}#metrics{number}", code, shown))
    return found


METRIC_EXAMPLES = _metric_examples()


def test_the_observability_page_shows_its_metrics_output() -> None:
    assert [name.split("#")[0] for name, _, _ in METRIC_EXAMPLES] == ["docs/observability.md"]


@pytest.mark.parametrize(
    ("name", "code", "shown"), METRIC_EXAMPLES, ids=[n for n, _, _ in METRIC_EXAMPLES]
)
def test_a_metrics_example_prints_the_series_it_shows(
    name: str, code: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The series (name and labels; values vary) the page shows are those it prints."""
    exec(compile(code, name, "exec", dont_inherit=True), {"__name__": name})
    printed = capsys.readouterr().out

    def series(output: str) -> list[str]:
        return [line.rsplit(" ", 1)[0] for line in output.splitlines() if line]

    assert series(printed) == series(shown)
