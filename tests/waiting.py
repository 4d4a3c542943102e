"""Waiting, in a test, for something that another thread or process brings about."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

__all__ = ["call_in_thread", "wait_until", "wait_until_async"]

#: Seconds between two looks at the condition.
_PAUSE = 0.01


def wait_until(
    condition: Callable[[], object], what: str = "the condition", within: float = 20.0
) -> None:
    """Poll ``condition`` (every 10 ms) until it is true; fail the test, naming ``what``
    and ``within``, when it is not true within ``within`` seconds.

    ``what`` names what is awaited ("the worker's consumer", "the report of the lost
    lease"); ``within`` bounds a failure, it does not pace the test."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        time.sleep(_PAUSE)  # polling with a deadline, not synchronisation


async def wait_until_async(
    condition: Callable[[], object], what: str = "the condition", within: float = 20.0
) -> None:
    """:func:`wait_until` in a coroutine: the event loop runs between two looks."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(_PAUSE)  # polling with a deadline, not synchronisation


def call_in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``call`` in a daemon thread; that thread, and the list that gets what the
    call raises (anything: what it raises is what a test looks at)."""
    raised: list[BaseException] = []

    def calling() -> None:
        try:
            call()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=calling, daemon=True)
    thread.start()
    return thread, raised
