"""Which receive's fetch a task (or thread) runs within: a close called from within a
subscription's own fetch (a backend's callback run in it, such as redis+pubsub's
``on_gap``) cannot wait for that fetch to end, so the receive does the closing once
the fetch has ended (see ``AsyncSubscription.close``)."""

from __future__ import annotations

import contextvars
import sys

__all__ = ["FETCHING_HERE", "Fetching", "current"]


def current() -> object:
    """The asyncio task running (None in a thread without an event loop). asyncio is
    not imported for this: a program that has not imported it runs no task."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


class Fetching:
    """One receive's fetch, as the closes from within it see it."""

    __slots__ = ("awaited", "close_left", "subscription", "tasks")

    def __init__(self, subscription: object) -> None:
        self.subscription = subscription
        #: The tasks within the fetch: its own, and a broker close it waits on (the
        #: subscription module's ``lend_fetch``). In threads: None, the fetching one's.
        self.tasks: set[object] = set()
        #: Whether its receive still waits for it (not cancelled, not ended).
        self.awaited = True
        #: Whether a close from within it left the closing to the receive.
        self.close_left = False

    def within(self, subscription: object) -> bool:
        """Whether a close of ``subscription`` here is within this fetch, whose
        receive, still waiting for it, can do that closing once it lets go."""
        return subscription is self.subscription and self.awaited and current() in self.tasks


#: The fetch running in this task (thread). Tasks that a callback run within it
#: starts copy this context: only the fetch's own task (and a broker close it waits
#: on) is within it. Threads do not copy it.
FETCHING_HERE: contextvars.ContextVar[Fetching | None] = contextvars.ContextVar(
    "brokerkit_fetching_here", default=None
)
