"""``brokerkit check URL``: the contract suite against a live broker, promise by promise."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from brokerkit._url import BrokerURL
from brokerkit.cli._admin import UrlArg
from brokerkit.cli._output import err, out
from brokerkit.exceptions import BrokerError, ConfigurationError

__all__ = ["Outcome", "parse_junit", "promise_of", "register", "run_contracts"]


@dataclass(frozen=True)
class Outcome:
    """One test of the contract suite.

    :ivar promise: the test class (the promise it checks), such as ``TestFanout``.
    :ivar status: ``"pass"``, ``"skip"`` or ``"fail"``.
    :ivar reason: why it skipped or failed (the first line).
    """

    promise: str
    test: str
    status: str
    reason: str = ""


def register(app: typer.Typer) -> None:
    app.command("check")(check)


def parse_junit(path: Path) -> list[Outcome]:
    """The outcomes in a pytest ``--junitxml`` report."""
    outcomes = []
    root = ElementTree.parse(path).getroot()
    for case in root.iter("testcase"):
        promise = case.get("classname", "").rsplit(".", 1)[-1] or "?"
        status, reason = "pass", ""
        for child in case:
            if child.tag == "skipped":
                status = "skip"
                reason = child.get("message", "")
            elif child.tag in ("failure", "error"):
                status = "fail"
                reason = child.get("message", "") or (child.text or "").strip()
        outcomes.append(Outcome(promise, case.get("name", "?"), status, _first_line(reason)))
    return outcomes


def promise_of(test: str) -> str:
    """A test's name as the promise it checks: ``test_no_loss[memory://]`` -> ``no loss``."""
    return test.split("[", 1)[0].removeprefix("test_").replace("_", " ")


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.removeprefix("Skipped: ")[:160]


def run_contracts(url: str, extra: list[str] | None = None) -> tuple[int, list[Outcome]]:
    """Run ``pytest --brokerkit-url URL --pyargs brokerkit.contracts`` in a child process;
    return pytest's exit status and the outcomes.

    :raises ConfigurationError: pytest or the contract suite is not installed.
    """
    for module in ("pytest", "hypothesis", "brokerkit.contracts"):
        if importlib.util.find_spec(module) is None:
            raise ConfigurationError(
                f"brokerkit check needs {module!r}, which is not installed: "
                'pip install "pybrokerkit[contracts]"'
            )
    with tempfile.TemporaryDirectory(prefix="brokerkit-check-") as directory:
        report = Path(directory) / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "--brokerkit-url",
            BrokerURL.parse(url).render(hide_password=False),
            "--pyargs",
            "brokerkit.contracts",
            f"--junitxml={report}",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            directory,
            *(extra or []),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, cwd=directory)
        outcomes = parse_junit(report) if report.exists() else []
    if completed.returncode not in (0, 1) and not outcomes:
        tail = (completed.stdout + completed.stderr).strip().splitlines()[-3:]
        raise BrokerError(
            f"the contract suite did not run (pytest exit status {completed.returncode}): "
            + " | ".join(tail)
        )
    return completed.returncode, outcomes


def check(
    url: UrlArg,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show each test's full name.")
    ] = False,
    keyword: Annotated[
        str | None, typer.Option("-k", help="Only tests matching this pytest expression.")
    ] = None,
) -> None:
    """Run the contract suite against a live URL; print pass/skip/fail per promise."""
    parsed = BrokerURL.parse(url)
    err.print(f"running the brokerkit contract suite against {parsed} ...")
    status, outcomes = run_contracts(url, ["-k", keyword] if keyword else None)
    table = Table(title=f"contract suite on {parsed}")
    table.add_column("promise")
    table.add_column("result")
    table.add_column("why", overflow="fold")
    style = {"pass": "[green]pass[/]", "skip": "[yellow]skip[/]", "fail": "[bold red]FAIL[/]"}
    for outcome in outcomes:
        name = f"{outcome.promise}::{outcome.test}" if verbose else promise_of(outcome.test)
        table.add_row(name, style[outcome.status], outcome.reason)
    out.print(table)
    totals = {s: sum(1 for o in outcomes if o.status == s) for s in ("pass", "skip", "fail")}
    err.print(f"{totals['pass']} passed, {totals['skip']} skipped, {totals['fail']} failed")
    if status != 0 or totals["fail"]:
        raise typer.Exit(1)
