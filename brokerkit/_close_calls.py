"""The calls a broker's close makes itself, told apart from every other call.

A close begins by waking what retries against a lost server (the broker's
``_wake_waits`` hook): a call under way then gives up at once, and so does one that
reaches its retries only later (it passed the open check just before the close began).
The close's own calls (its subscriptions' hand-backs and unsubscribes, the backend's
``_close``) retry as before: the close makes them inside :func:`closing_calls`, and a
retry loop asks :func:`by_the_close` whether the call it runs is one of them.

A context variable: per thread, and per task under asyncio, where it passes to the
tasks the close starts and to the work it hands to another thread's event loop
(``run_coroutine_threadsafe`` copies the caller's context): a sync broker over an
asyncio one (the loop bridge) marks the inner broker's calls too. One variable for
both sides, so that such a pair agrees.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["by_the_close", "closing_calls"]

_BY_THE_CLOSE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "brokerkit_by_the_close", default=False
)


@contextmanager
def closing_calls() -> Iterator[None]:
    """Mark what runs inside as the close's own calls (and the tasks started there)."""
    token = _BY_THE_CLOSE.set(True)
    try:
        yield
    finally:
        _BY_THE_CLOSE.reset(token)


def by_the_close() -> bool:
    """Whether the running call is one a broker's close makes itself: it retries
    through a lost connection as any call would before the close began; any other
    gives up at once once the close has begun."""
    return _BY_THE_CLOSE.get()
