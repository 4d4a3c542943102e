"""Ctrl-C at a chosen moment, for tests of what an interrupted call leaves behind: a
SIGINT sent to the main thread once it blocks waiting (the tests that use it run in
the main thread, with Python's default SIGINT handler installed for them)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

__all__ = ["interrupt_when"]

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 30.0


@pytest.fixture
def interrupt_when() -> Iterator[Callable[[threading.Event], None]]:
    """``interrupt_when(entered)``: once ``entered`` is set, and the main thread (this
    test's) is blocked waiting, a SIGINT raises KeyboardInterrupt there, as Ctrl-C
    does (the default handler installed for the test)."""
    assert threading.current_thread() is threading.main_thread()
    saved = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threads: list[threading.Thread] = []

    def interrupt(entered: threading.Event) -> None:
        main = threading.main_thread().ident
        assert main is not None
        if not entered.wait(GUARD):
            return
        deadline = time.monotonic() + GUARD
        while not _blocked_waiting(main):  # a bounded poll: nothing to wait on
            if time.monotonic() > deadline:
                return
            time.sleep(0.001)
        signal.pthread_kill(main, signal.SIGINT)

    def arm(entered: threading.Event) -> None:
        thread = threading.Thread(target=interrupt, args=(entered,), daemon=True)
        thread.start()
        threads.append(thread)

    try:
        yield arm
    finally:
        for thread in threads:
            thread.join(GUARD)
        signal.signal(signal.SIGINT, saved)


def _blocked_waiting(ident: int) -> bool:
    """Whether thread ``ident`` waits on a condition (a future's result, here)."""
    frame = sys._current_frames().get(ident)
    return frame is not None and frame.f_code is threading.Condition.wait.__code__
