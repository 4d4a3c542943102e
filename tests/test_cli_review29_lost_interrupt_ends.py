"""A Ctrl-C lost in a finaliser is delivered again only while the command runs, and only
in the main thread (review 29 of the command line).

The sys.unraisablehook that delivers such an interrupt again (from a timer thread, as
SIGINT to the main thread) never cancelled its timer: a Ctrl-C lost as a command ended
was delivered after :func:`run` had returned, into the program that called it (its
next ``time.sleep`` raised KeyboardInterrupt; for the ``brokerkit`` command, a
KeyboardInterrupt traceback inside Python's shutdown). The hook was also installed by
a command run in another thread, where no signal lands, and then interrupted the
program's main thread; two commands run at once in two threads left it installed for
ever (each put back the hook it had found).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("typer")

import brokerkit.cli._app as app_module


class LostInterrupt:
    """Raises KeyboardInterrupt in its finaliser, as the SIGINT handler does when a
    Ctrl-C lands while Python runs one: Python drops it, "Exception ignored in"."""

    def __del__(self) -> None:
        raise KeyboardInterrupt


def _wait_for_redeliveries(before: set[threading.Thread]) -> None:
    """Let every timer started since ``before`` (one that could deliver an interrupt
    again) run out, then run Python code in the main thread, where a delivered
    interrupt raises."""
    for thread in set(threading.enumerate()) - before:
        if isinstance(thread, threading.Timer):
            thread.join(30)
    sum(range(1000))


@pytest.fixture
def command(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], object]], None]:
    """Make the command ``run`` runs call the given function as it ends."""
    real = app_module._run
    at_the_end: list[Callable[[], object]] = []

    def ending(argv: list[str], debug: bool) -> int:
        status = real(argv, debug)
        for step in at_the_end:
            step()
        return status

    monkeypatch.setattr(app_module, "_run", ending)
    return at_the_end.append


def test_a_ctrl_c_lost_as_the_command_ends_never_reaches_the_program_after_it(
    command: Callable[[Callable[[], object]], None], capsys: pytest.CaptureFixture[str]
) -> None:
    command(LostInterrupt)  # made and dropped at once: its finaliser runs
    hook = sys.unraisablehook
    before = set(threading.enumerate())
    assert app_module.run(["--version"]) == 0
    assert sys.unraisablehook is hook
    try:
        _wait_for_redeliveries(before)
    except KeyboardInterrupt:
        pytest.fail("a KeyboardInterrupt reached the program after run() returned")
    assert capsys.readouterr().out.startswith("brokerkit ")


def test_the_brokerkit_command_ends_without_a_traceback_after_a_lost_ctrl_c() -> None:
    code = (
        "import brokerkit.cli._app as app\n"
        "from brokerkit.cli import main\n"
        "class Lost:\n"
        "    def __del__(self): raise KeyboardInterrupt\n"
        "real = app._run\n"
        "def ending(argv, debug):\n"
        "    status = real(argv, debug); Lost(); return status\n"
        "app._run = ending\n"
        "main(['--version'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "KeyboardInterrupt" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def _in_a_thread(argv: list[str]) -> tuple[threading.Thread, list[int]]:
    statuses: list[int] = []
    thread = threading.Thread(target=lambda: statuses.append(app_module.run(argv)))
    thread.start()
    return thread, statuses


def test_a_command_run_in_another_thread_leaves_the_main_thread_s_interrupts_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ignored: list[BaseException | None] = []

    def program_hook(unraisable: Any) -> None:
        ignored.append(unraisable.exc_value)

    monkeypatch.setattr(sys, "unraisablehook", program_hook)
    started, finish = threading.Event(), threading.Event()
    hooks_seen: list[object] = []

    def waiting(argv: list[str], debug: bool) -> int:
        hooks_seen.append(sys.unraisablehook)
        started.set()
        finish.wait(60)
        return 0

    monkeypatch.setattr(app_module, "_run", waiting)
    before = set(threading.enumerate())
    thread, statuses = _in_a_thread(["anything"])
    try:
        assert started.wait(60)
        try:
            LostInterrupt()  # the program's own Ctrl-C, lost in the main thread
            _wait_for_redeliveries(before)
        except KeyboardInterrupt:
            pytest.fail("a command in another thread interrupted the main thread")
    finally:
        finish.set()
        thread.join(60)
    assert statuses == [0]
    assert hooks_seen == [program_hook]
    assert len(ignored) == 1 and isinstance(ignored[0], KeyboardInterrupt)
    assert sys.unraisablehook is program_hook


def test_commands_run_at_once_in_two_threads_leave_the_hook_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = sys.unraisablehook
    started = {name: threading.Event() for name in ("a", "b")}
    finish = {name: threading.Event() for name in ("a", "b")}

    def waiting(argv: list[str], debug: bool) -> int:
        started[argv[0]].set()
        finish[argv[0]].wait(60)
        return 0

    monkeypatch.setattr(app_module, "_run", waiting)
    first, _ = _in_a_thread(["a"])
    assert started["a"].wait(60)
    second, _ = _in_a_thread(["b"])
    assert started["b"].wait(60)
    finish["a"].set()  # the first to start ends first
    first.join(60)
    finish["b"].set()
    second.join(60)
    assert sys.unraisablehook is hook


def test_a_hook_set_during_the_command_is_left_in_place(
    command: Callable[[Callable[[], object]], None], capsys: pytest.CaptureFixture[str]
) -> None:
    def own_hook(unraisable: Any) -> None:
        pass

    before = sys.unraisablehook
    command(lambda: setattr(sys, "unraisablehook", own_hook))
    try:
        assert app_module.run(["--version"]) == 0
        assert sys.unraisablehook is own_hook
    finally:
        sys.unraisablehook = before


def test_a_ctrl_c_as_run_puts_things_back_is_still_the_command_s(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One delivered again just before the command ended lands as run() puts the hooks
    back: the exit status is 130, as for any Ctrl-C, not a KeyboardInterrupt out of it."""
    real = app_module._library_logging

    @contextlib.contextmanager
    def interrupted_at_the_end(argv: list[str], debug: bool) -> Iterator[None]:
        with real(argv, debug):
            yield
        raise KeyboardInterrupt

    monkeypatch.setattr(app_module, "_library_logging", interrupted_at_the_end)
    try:
        status = app_module.run(["--version"])
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt came out of run()")
    assert status == 130
    assert capsys.readouterr().err == "interrupted\n"
