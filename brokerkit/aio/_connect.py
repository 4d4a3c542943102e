"""``brokerkit.aio.connect``: the asyncio broker for a URL."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from brokerkit._broker_async import AsyncBroker
from brokerkit._plugins import backend_for
from brokerkit._url import BrokerURL
from brokerkit.aio._threaded import threaded

__all__ = ["Connecting", "connect"]


class Connecting:
    """What :func:`connect` returns: ``await`` it for the broker, or use it as
    ``async with connect(url) as broker:`` to have the broker closed at the end.

    Each ``await`` and each ``async with`` opens a broker of its own, so one
    ``Connecting`` may be kept and entered by many tasks at once (a request handler's
    ``async with CONNECT as broker:``): each block closes the broker it opened, and
    only that one. A block left in another task than the one that entered it (an
    async generator's, advanced by two tasks, as pytest-asyncio does a fixture's)
    closes the broker of the last block entered by a task that has ended since."""

    def __init__(self, url: str | BrokerURL | None, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        #: the brokers of the ``async with`` blocks open now, each with the task that
        #: entered it, in the order they were entered
        self._entered: list[tuple[asyncio.Task[Any] | None, AsyncBroker]] = []

    async def _open(self) -> AsyncBroker:
        parsed, info = backend_for(self._url)
        native = info.load_async()
        if native is not None:
            return native.from_url(parsed, **self._options)
        return await threaded(info.load()).open(parsed, **self._options)

    def __await__(self) -> Generator[Any, None, AsyncBroker]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncBroker:
        broker = await self._open()
        self._entered.append((asyncio.current_task(), broker))
        return broker

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        broker = self._leaving()
        if broker is not None:
            await broker.close()

    def _leaving(self) -> AsyncBroker | None:
        """The broker of the block being left, taken out of :attr:`_entered`: the last
        one this task entered; else (the block was entered in another task) the last
        one whose task has ended; else the last one."""
        task = asyncio.current_task()
        entered = self._entered
        for belongs in (
            lambda other: other is task,
            lambda other: other is None or other.done(),
            lambda other: True,
        ):
            for index in range(len(entered) - 1, -1, -1):
                if belongs(entered[index][0]):
                    return entered.pop(index)[1]
        return None

    if not TYPE_CHECKING:  # (a type checker tells of a missing await on its own)

        def __getattr__(self, name: str) -> Any:
            if not name.startswith("_") and hasattr(AsyncBroker, name):
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {name!r}: "
                    "brokerkit.aio.connect() returns what opens the broker, not the broker; "
                    "use 'broker = await brokerkit.aio.connect(url)' or "
                    "'async with brokerkit.aio.connect(url) as broker:'",
                    name=name,
                    obj=self,
                )
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self
            )


def connect(url: str | BrokerURL | None = None, **options: Any) -> Connecting:
    """Connect to the broker at ``url`` with the asyncio API.

    ``broker = await brokerkit.aio.connect(url)``, or
    ``async with brokerkit.aio.connect(url) as broker: ...``. The same URLs, options
    and errors as :func:`brokerkit.connect`. The backend's native asyncio class is used
    where its plugin registered one (every built-in backend does); otherwise its sync
    class runs through a thread adapter
    (:class:`~brokerkit.aio.ThreadedAsyncBroker`), correct and slower.

    :raises InvalidURL: the URL cannot be parsed.
    :raises UnknownScheme: no installed backend serves the scheme.
    :raises InvalidOption: an option is unknown or invalid.
    :raises BackendUnavailable: the backend's driver is not installed.
    """
    return Connecting(url, options)
