"""Background work that does one thing every few seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable

from brokerkit._acompat import Background, Event, spawn
from brokerkit._logging import log_fields
from brokerkit.backends.redis._connection import TRANSIENT_ERRORS
from brokerkit.exceptions import BrokerError

__all__ = ["Periodic"]

log = logging.getLogger("brokerkit.redis")

#: Failures of a round that say the server is away, not that the code is wrong.
_EXPECTED: tuple[type[Exception], ...] = (BrokerError, *TRANSIENT_ERRORS)


class Periodic:
    """Calls ``work()`` every ``interval`` seconds in the background, from
    :meth:`start` until :meth:`stop` (see ``brokerkit._compat.spawn``).

    A round that fails is logged and the next round tries again: a server that is
    briefly away, or a bug, never ends the work for good. A stretch of failures is
    logged once when it starts (WARNING; ERROR with the traceback for an unexpected
    exception) and once when it ends (INFO).

    :param what: what ``work`` does, for the log (``"renew 3 leases"`` reads well).
    """

    def __init__(
        self, work: Callable[[], Awaitable[None]], interval: float, name: str, what: str
    ) -> None:
        self._work = work
        self._interval = interval
        self._name = name
        self._what = what
        self._stopped = Event()
        self._background: Background | None = None
        self._starting = threading.Lock()

    def start(self) -> None:
        """Start the work; calling it again, or after :meth:`stop`, does nothing."""
        with self._starting:
            if self._background is None and not self._stopped.is_set():
                self._background = spawn(self._run, self._name)

    async def stop(self) -> None:
        """Stop the work and wait (5 s at most) for the round in progress."""
        self._stopped.set()
        if self._background is not None:
            await self._background.join(5)

    async def _run(self) -> None:
        failing = False
        while not await self._stopped.wait(self._interval):
            try:
                await self._work()
            except _EXPECTED as exc:
                # One WARNING when it starts failing (a server away, a lost connection),
                # one INFO when it works again: never a line per round.
                level = logging.DEBUG if failing else logging.WARNING
                log.log(
                    level,
                    "could not %s: %s; trying again every %gs",
                    self._what,
                    exc,
                    self._interval,
                    extra=log_fields(),
                )
                failing = True
            except Exception:
                level = logging.DEBUG if failing else logging.ERROR
                log.log(level, "could not %s", self._what, exc_info=True, extra=log_fields())
                failing = True
            else:
                if failing:
                    log.info("could %s again", self._what, extra=log_fields())
                failing = False
