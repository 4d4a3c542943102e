"""The context managers plugins ask a worker to run a handler inside (listed in a
delivery's hook scope under ``HANDLER_CONTEXT``: see :mod:`brokerkit._hooks`), entered
and left each on its own, so that one that fails never changes what the handler does
or raises."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from brokerkit._logging import delivery_fields

__all__ = ["HandlerContext"]

log = logging.getLogger("brokerkit.hooks")


class HandlerContext(AbstractContextManager[None]):
    """The context managers plugins asked a handler to run inside (see
    :meth:`HookRelay.handler_context`), each failing on its own."""

    def __init__(
        self, delivery: Any, factories: tuple[Callable[[], AbstractContextManager[Any]], ...]
    ) -> None:
        self._delivery = delivery
        self._factories = factories
        self._entered: list[AbstractContextManager[Any]] = []

    def __enter__(self) -> None:
        for factory in self._factories:
            try:
                manager = factory()
                manager.__enter__()
            except Exception:
                log.exception(
                    "a plugin's handler context failed to enter; the handler runs without it",
                    extra=delivery_fields([self._delivery]),
                )
                continue
            self._entered.append(manager)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        entered, self._entered = self._entered, []
        for manager in reversed(entered):
            try:
                manager.__exit__(kind, error, traceback)
            except Exception as raised:
                if raised is not error:  # (one that re-raises the handler's error is fine)
                    log.exception(
                        "a plugin's handler context failed to leave",
                        extra=delivery_fields([self._delivery]),
                    )
