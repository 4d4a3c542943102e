"""``brokerkit.aio.connect``: the asyncio broker for a URL."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any

from brokerkit._broker_async import AsyncBroker
from brokerkit._plugins import backend_for
from brokerkit._url import BrokerURL
from brokerkit.aio._threaded import threaded

__all__ = ["Connecting", "connect"]


class Connecting:
    """What :func:`connect` returns: ``await`` it for the broker, or use it as
    ``async with connect(url) as broker:`` to have the broker closed at the end."""

    def __init__(self, url: str | BrokerURL | None, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._broker: AsyncBroker | None = None

    async def _open(self) -> AsyncBroker:
        parsed, info = backend_for(self._url)
        native = info.load_async()
        if native is not None:
            return native.from_url(parsed, **self._options)
        return await threaded(info.load()).open(parsed, **self._options)

    def __await__(self) -> Generator[Any, None, AsyncBroker]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncBroker:
        self._broker = await self._open()
        return self._broker

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._broker is not None:
            await self._broker.close()


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
