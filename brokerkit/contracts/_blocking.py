"""A blocking view of the asyncio API, so that the one contract suite checks it too.

The suite's tests are plain functions that call ``broker.publish(...)``,
``subscription.receive(...)`` and ``delivery.ack()``. When a plugin author's factory
returns an :class:`~brokerkit.aio.AsyncBroker` (or ``brokerkit.aio.connect(url)``), the
suite hands its tests a :class:`BlockingView` of it instead: every coroutine the test
calls runs on a private event loop in a thread of its own (:class:`LoopThread`), and
every async object that comes back (subscription, delivery) is viewed the same way.
The promises checked are the asyncio API's own: its publish, subscribe, receive, ack,
nack and close run, with their real awaits, on a real event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

from brokerkit._broker_async import AsyncBroker
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._loop_thread import LoopThread
from brokerkit._subscription_async import AsyncSubscription

__all__ = ["BlockingView", "LoopThread", "is_async_result", "open_blocking"]

_VIEWED = (AsyncBroker, AsyncSubscription, AsyncDelivery)


class BlockingView:
    """A sync stand-in for one async broker, subscription or delivery."""

    __slots__ = ("_loop", "_target", "_views")

    def __init__(self, target: Any, loop: LoopThread, views: dict[int, BlockingView]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_loop", loop)
        object.__setattr__(self, "_views", views)

    @property
    def target(self) -> Any:
        """The async object viewed."""
        return self._target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if inspect.isasyncgenfunction(value):
            return lambda *args, **kwargs: self._iterate(value(*_unwrap(args), **_unwrap(kwargs)))
        if inspect.iscoroutinefunction(value):
            return lambda *args, **kwargs: self._wrap(
                self._loop.run(value(*_unwrap(args), **_unwrap(kwargs)))
            )
        return self._wrap(value)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, _VIEWED):
            view = self._views.get(id(value))
            if view is None or view._target is not value:
                view = self._views[id(value)] = BlockingView(value, self._loop, self._views)
            return view
        if isinstance(value, list):
            return [self._wrap(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._wrap(v) for v in value)
        return value

    def _iterate(self, iterator: AsyncIterator[Any]) -> Iterator[Any]:
        try:
            while True:
                try:
                    item = self._loop.run(_next(iterator))
                except StopAsyncIteration:
                    return
                yield self._wrap(item)
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                self._loop.run(close())

    def __iter__(self) -> Iterator[Any]:
        return self._iterate(self._target.__aiter__())

    def __enter__(self) -> BlockingView:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._loop.run(self._target.close())

    def __repr__(self) -> str:
        return f"<blocking view of {self._target!r}>"


async def _next(iterator: AsyncIterator[Any]) -> Any:
    return await iterator.__anext__()


def _unwrap(value: Any) -> Any:
    if isinstance(value, BlockingView):
        return value.target
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


def is_async_result(made: object) -> bool:
    """Whether a factory returned the asyncio API: an AsyncBroker, or an awaitable of one
    (such as ``brokerkit.aio.connect(url)``)."""
    return isinstance(made, AsyncBroker) or inspect.isawaitable(made)


def open_blocking(made: object, loop: LoopThread) -> BlockingView:
    """A blocking view of the AsyncBroker ``made`` is or will be, made on ``loop``."""

    async def resolve() -> AsyncBroker:
        broker = await made if inspect.isawaitable(made) else made
        if not isinstance(broker, AsyncBroker):
            raise TypeError(
                f"make_broker's factory gave {broker!r}, not a brokerkit.aio.AsyncBroker"
            )
        return broker

    return BlockingView(loop.run(resolve()), loop, {})
