"""``brokerkit check URL``: the contract suite against a live broker, promise by promise.

The suite runs in a child pytest, on a test module written for the run; the URL
(password included) reaches the child through its environment, never its argv, where
``ps`` would show it. The child reports each test as it finishes, one JSON line in a
file that this process follows, so that results stream with a progress bar. SIGINT or
SIGTERM to this process ends the child (and waits for it) before the run's keys are
deleted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from brokerkit._capabilities import Capability
from brokerkit._plugins import backend_for, connect
from brokerkit._url import BrokerURL
from brokerkit.cli._admin import Interrupt, stop_on_interrupt
from brokerkit.cli._check_cleanup import cleaner_of
from brokerkit.cli._output import err, out, progress_bar
from brokerkit.cli._scratch import say_left, scratch
from brokerkit.cli._url import UrlArg, command
from brokerkit.exceptions import BrokerError, ConfigurationError, ConnectionFailed

__all__ = [
    "CHILD_URL_ENV",
    "Outcome",
    "SuiteRefusedArguments",
    "promise_of",
    "register",
    "run_contracts",
]

#: How the child pytest receives the URL to check.
CHILD_URL_ENV = "BROKERKIT_CHECK_URL"
_EVENTS_ENV = "BROKERKIT_CHECK_EVENTS"
#: How often the parent looks for new results.
_POLL = 0.1
#: How long the child gets to end after SIGINT before it is killed.
_CHILD_GRACE = 10.0


@dataclass(frozen=True)
class Outcome:
    """One test of the contract suite.

    :ivar promise: the test class (the promise it checks), such as ``TestFanout``.
    :ivar test: the test's name, such as ``test_no_loss``.
    :ivar status: ``"pass"``, ``"skip"`` or ``"fail"``.
    :ivar reason: why it skipped or failed (the first line).
    :ivar statement: the promise in words: the first paragraph of the test's
        docstring ("" if it has none).
    """

    promise: str
    test: str
    status: str
    reason: str = ""
    statement: str = ""

    def described(self) -> str:
        """The promise as a reader wants it: the docstring's first paragraph (else the
        test's name in words), and the parameters that tell one case from another, as in
        ``Every body kind and size arrives intact, with its metadata. [json-dict]``."""
        name, bracket, params = self.test.partition("[")
        words = self.statement or promise_of(name)
        return f"{words} [{params}" if bracket else words


def register(app: typer.Typer) -> None:
    command(app, "check", check)


def promise_of(test: str) -> str:
    """A test's name as the promise it checks: ``test_no_loss[memory://]`` -> ``no loss``."""
    return test.split("[", 1)[0].removeprefix("test_").replace("_", " ")


# The child's test module: the shipped suite, with brokers made from the URL in the
# environment; a URL whose backend takes a prefix gets a fresh one under the run's per
# test, and what the test's brokers made off Redis is deleted as the test ends (the
# fixture's teardown, after the suite closed them; on Ctrl-C too: pytest tears down,
# and a Ctrl-C during the deletion waits for its end), each event in the events file:
# "made" as the test begins, then "cleaned", and "left" for each thing not deleted.
_SUITE = textwrap.dedent(
    """
    import json
    import os
    import uuid

    import pytest

    import brokerkit
    from brokerkit.cli._check_cleanup import deferring_interrupts, remove_made
    from brokerkit.contracts import BrokerContract

    _URL = os.environ[{url_env!r}]
    _EVENTS = os.environ[{events_env!r}]


    def _emit(**event):
        with open(_EVENTS, "a") as events:  # (appends: the reporter's lines stay whole)
            events.write(json.dumps(event) + "\\n")


    class TestContract(BrokerContract):
        @pytest.fixture
        def make_broker(self):
            fresh = uuid.uuid4().hex[:12]
            options = {{}}
            if _URL.rstrip("/") == "memory:":
                target = "memory://check-" + fresh
            else:
                target = _URL
                prefix = {prefix!r}
                if prefix:
                    options["prefix"] = prefix + "-" + fresh
            made = []

            def make(**more):
                broker = brokerkit.connect(target, **{{**options, **more}})
                made.append(broker)
                return broker

            if {clean!r} and options:
                _emit(event="made", prefix=options["prefix"])
            yield make
            if {clean!r} and options:
                with deferring_interrupts():
                    for line in remove_made(made, options["prefix"]):
                        _emit(event="left", what=line)
                    _emit(event="cleaned", prefix=options["prefix"])
    """
)

# The child's conftest: one JSON line per finished test, in the events file.
_REPORTER = textwrap.dedent(
    """
    import json
    import os

    _EVENTS = open(os.environ[{events_env!r}], "a", buffering=1)
    _PHASES = {{}}
    _PROMISES = {{}}


    def _emit(**event):
        _EVENTS.write(json.dumps(event) + "\\n")


    def pytest_collection_finish(session):
        for item in session.items:
            doc = (getattr(getattr(item, "obj", None), "__doc__", None) or "").strip()
            _PROMISES[item.nodeid] = " ".join(doc.split("\\n\\n")[0].split())
        _emit(event="collected", total=len(session.items))


    def _reason(report):
        if report.skipped and isinstance(report.longrepr, tuple):
            return str(report.longrepr[2]).removeprefix("Skipped: ")
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            return crash.message
        return str(report.longrepr or "")


    def pytest_runtest_logreport(report):
        status = "fail" if report.failed else "skip" if report.skipped else "pass"
        seen = _PHASES.setdefault(report.nodeid, ["pass", ""])
        if seen[0] == "pass" and status != "pass":
            seen[:] = [status, _reason(report)]


    def pytest_runtest_logfinish(nodeid, location):
        status, reason = _PHASES.pop(nodeid, ["pass", ""])
        promise = _PROMISES.get(nodeid, "")
        _emit(event="test", nodeid=nodeid, status=status, reason=reason, promise=promise)
    """
)


def _outcome(event: dict[str, Any]) -> Outcome:
    nodeid = str(event["nodeid"])
    parts = nodeid.split("::")
    promise = parts[-2] if len(parts) > 2 else "?"
    reason = str(event.get("reason", "")).strip()
    first = reason.splitlines()[0][:200] if reason else ""
    statement = str(event.get("promise", ""))
    return Outcome(promise, parts[-1], str(event["status"]), first, statement)


def run_contracts(
    url: str,
    extra: list[str] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    left: list[str] | None = None,
) -> tuple[int, list[Outcome]]:
    """Run the contract suite against ``url`` in a child pytest; return its exit status
    and the outcomes, calling ``on_total`` once the tests are collected and
    ``on_outcome`` as each one finishes.

    A URL whose backend takes a ``prefix`` runs under one of its own
    (``brokerkit-check-...``, each test under ``brokerkit-check-...-<12 random hex
    digits>``), and what the run made is deleted: on Redis every key under it at the
    end; on kombu and ``nats`` what each test's brokers made as the test ends (see
    :mod:`brokerkit.cli._check_cleanup`). ``left`` is extended, even after an error,
    with a line for each thing the run made and could not delete, or could not name
    (on a backend brokerkit deletes nothing of: the note that it did not).

    SIGINT or SIGTERM (in the main thread) stops the run: the child is terminated and
    waited for (it deletes what the test under way made as it ends), then the keys are
    deleted, then the run exits.

    :raises ConfigurationError: pytest or the contract suite is not installed; a TLS
        certificate was refused (see :func:`_reach`).
    :raises ConnectionFailed: the broker cannot be reached or refuses the credentials:
        nothing ran (see :func:`_reach`).
    :raises SuiteRefusedArguments: pytest refused ``extra`` (exit status 4): nothing ran.
    :raises BrokerError: the suite could not run at all.
    :raises typer.Exit: a signal stopped the run (status 128 + its number: 130, 143).
    """
    for module in ("pytest", "hypothesis", "brokerkit.contracts"):
        if importlib.util.find_spec(module) is None:
            raise ConfigurationError(
                f"brokerkit check needs {module!r}, which is not installed: "
                'pip install "pybrokerkit[contracts]"'
            )
    with stop_on_interrupt() as stop:
        try:
            with stop.raising():  # (nothing made yet: a signal ends it at once)
                _reach(url)
        except KeyboardInterrupt:
            if stop.signum == signal.SIGINT:
                raise  # "interrupted", status 130, as for a Ctrl-C anywhere
        stop.exit_if_interrupted()  # (SIGTERM: 143, as during the suite)
    outcomes: list[Outcome] = []
    kept: list[str] = [] if left is None else left
    with (
        stop_on_interrupt() as stop,
        scratch(url, "check", every_backend=True) as (target, prefix),
        tempfile.TemporaryDirectory(prefix="brokerkit-check-") as directory,
    ):
        clean = prefix is not None and cleaner_of(target.scheme) is not None
        if not clean and target.family not in ("redis", "rediss") and _keeps(target):
            where = f"under the prefix {prefix}" if prefix else "(its topics bkc.*)"
            kept.append(
                f"(what the run made {where}: brokerkit knows no way to delete it on "
                f"{target.scheme})"
            )
        folder = Path(directory)
        events = folder / "events.jsonl"
        events.touch()
        (folder / "test_contract.py").write_text(
            _SUITE.format(url_env=CHILD_URL_ENV, events_env=_EVENTS_ENV, prefix=prefix, clean=clean)
        )
        (folder / "conftest.py").write_text(_REPORTER.format(events_env=_EVENTS_ENV))
        (folder / "pytest.ini").write_text("[pytest]\n")
        env = {
            **os.environ,
            CHILD_URL_ENV: target.render(hide_password=False),
            _EVENTS_ENV: str(events),
        }
        env.pop("PYTEST_ADDOPTS", None)
        command = [
            sys.executable, "-m", "pytest", "test_contract.py",
            "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:xdist",
            *(extra or []),
        ]  # fmt: skip
        # The child's output goes to a file: a pipe read only at the end would fill up
        # with a long report and stall the child.
        log = folder / "output.txt"
        with (
            log.open("wb") as sink,
            subprocess.Popen(
                command, cwd=directory, env=env, stdout=sink, stderr=subprocess.STDOUT
            ) as child,
        ):
            try:
                with events.open() as reader:
                    for event in _follow(reader, child, stop):
                        if event.get("event") == "collected" and on_total is not None:
                            on_total(int(event["total"]))
                        elif event.get("event") == "test":
                            outcome = _outcome(event)
                            outcomes.append(outcome)
                            if on_outcome is not None:
                                on_outcome(outcome)
            finally:
                _end(child)
                # What the tests deleted, and did not, once the child has ended (the
                # last one's teardown comes after a Ctrl-C).
                kept.extend(_left(events.read_text(errors="replace")))
                if stop.is_set() and clean and cleaner_of(target.scheme) != "nats":
                    kept.append(
                        f"(the run was stopped in the middle of a test: a queue or exchange "
                        f"whose declaration that cut short is not known, and may be left "
                        f"under the prefix {prefix})"
                    )
            status = child.wait()
        output = log.read_text(errors="replace")
    stop.exit_if_interrupted()
    if status == _PYTEST_USAGE_ERROR and not outcomes:
        errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
        raise SuiteRefusedArguments(
            " | ".join(errors or output.strip().splitlines()[-3:]).removeprefix("ERROR: ")
        )
    if status not in (0, 1) and not outcomes:
        tail = output.strip().splitlines()[-3:]
        raise BrokerError(
            f"the contract suite did not run (pytest exit status {status}): " + " | ".join(tail)
        )
    return status, outcomes


#: The topic :func:`_reach` inspects: never made (an inspect makes nothing).
_PROBE_TOPIC = "brokerkit-check-reach"


def _reach(url: str) -> None:
    """Connect to ``url`` once and inspect a topic (which makes nothing), before any
    test runs: a broker that cannot be reached, or that refuses the credentials or a
    TLS certificate, would fail every test the same way (a wrong password ran the
    whole suite, 86 failures in four minutes, then said the keys could not be
    removed). Any other error of the inspect (a refused command; a backend, or a
    plugin, without ``inspect``: ``Unsupported``, ``NotImplementedError``, whatever
    it raises) is the suite's to report: the suite runs.

    :raises ConnectionFailed: (or :class:`ConfigurationError`) the connection error,
        saying that no test ran; or what ``connect()`` itself raised.
    """
    broker = connect(url)
    try:
        broker.inspect(_PROBE_TOPIC)
    except ConnectionFailed as exc:
        raise ConnectionFailed(f"{exc} (brokerkit check ran no test)") from exc
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} (brokerkit check ran no test)") from exc
    except Exception:
        pass  # (the suite tells what it means)
    finally:
        broker.close()


#: pytest's exit status for arguments it refuses (``pytest.ExitCode.USAGE_ERROR``).
_PYTEST_USAGE_ERROR = 4


class SuiteRefusedArguments(BrokerError):
    """The child pytest refused the arguments it was given (a ``-k`` expression that
    does not parse): nothing ran."""


def _keeps(url: BrokerURL) -> bool:
    """Whether the backend of ``url`` keeps what is published (PERSISTENT) beyond the
    run, as memory:// (each test's broker its own) does not."""
    if url.scheme == "memory":
        return False
    try:
        return Capability.PERSISTENT in backend_for(url)[1].load().capabilities
    except Exception:  # (connecting reports it)
        return False


def _left(events: str) -> list[str]:
    """What the child's tests said they could not delete (its ``left`` events), and a
    line for each test that began (``made``) and never said it had deleted what it made
    (``cleaned``: the child was killed, or stopped before its teardown)."""
    left: list[str] = []
    unsaid: dict[str, None] = {}
    for line in events.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # (a line cut short by a kill)
        if event.get("event") == "made":
            unsaid[str(event["prefix"])] = None
        elif event.get("event") == "cleaned":
            unsaid.pop(str(event["prefix"]), None)
        elif event.get("event") == "left":
            left.append(str(event["what"]))
    left.extend(
        f"(what the test under the prefix {prefix} made: the check ended before it was deleted)"
        for prefix in unsaid
    )
    return left


def _follow(
    reader: Any, child: subprocess.Popen[bytes], stop: Interrupt
) -> Iterator[dict[str, Any]]:
    """The events the child writes, as it writes them, until it exits or ``stop`` is set."""
    pending = ""
    while True:
        done = child.poll() is not None or stop.is_set()
        pending += reader.read()
        *lines, pending = pending.split("\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
        if done:
            return
        stop.wait(_POLL)  # a file has no blocking read; the child's exit ends the loop


def _end(child: subprocess.Popen[bytes]) -> None:
    """Make sure ``child`` has exited: SIGINT, as Ctrl-C on a terminal sends it (pytest
    then tears its fixtures down), then SIGKILL after a grace period."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGINT)
    try:
        child.wait(_CHILD_GRACE)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


_STYLE = {"pass": "[green]pass[/]", "skip": "[yellow]skip[/]", "fail": "[bold red]FAIL[/]"}


def check(
    url: UrlArg,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show each test's full name.")
    ] = False,
    keyword: Annotated[
        str | None, typer.Option("-k", help="Only tests matching this pytest expression.")
    ] = None,
) -> None:
    """Run the contract suite against a live URL; print pass/skip/fail per promise as
    each finishes (exit status 1 if any failed).

    It works under a prefix of its own, brokerkit-check-..., on every backend that
    takes one, and deletes what the run made there: on Redis every key under it at
    the end; on kombu and nats what each test made as the test ends. What it could
    not delete is named on stderr. A broker it cannot reach, or that refuses the
    credentials, ends it with that error before any test runs.
    """
    parsed = BrokerURL.parse(url)
    err.print(escape(f"running the brokerkit contract suite against {parsed} ..."))
    with progress_bar() as bar:
        task = bar.add_task("collecting", total=None)

        def on_total(total: int) -> None:
            bar.update(task, total=total, description="checking")

        def on_outcome(outcome: Outcome) -> None:
            name = f"{outcome.promise}::{outcome.test}" if verbose else outcome.described()
            why = f"  {escape(outcome.reason)}" if outcome.reason else ""
            # Through the bar's console, so that the line lands above the bar.
            bar.console.print(f"{_STYLE[outcome.status]}  {escape(name)}{why}", soft_wrap=True)
            bar.advance(task)

        left: list[str] = []
        try:
            status, outcomes = run_contracts(
                parsed.render(hide_password=False),
                ["-k", keyword] if keyword else None,
                on_total,
                on_outcome,
                left,
            )
        except SuiteRefusedArguments as exc:
            if keyword is None:
                raise
            raise typer.BadParameter(
                f"pytest refused {keyword!r}: {exc}", param_hint="-k"
            ) from None
        finally:
            say_left("check", left, parsed)
    totals = {s: sum(1 for o in outcomes if o.status == s) for s in ("pass", "skip", "fail")}
    summary = f"{totals['pass']} passed, {totals['skip']} skipped, {totals['fail']} failed"
    out.print(summary)
    if status != 0 or totals["fail"]:
        raise typer.Exit(1)
