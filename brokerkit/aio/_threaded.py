"""The thread adapter: a backend that has only sync primitives, under ``brokerkit.aio``.

Each primitive runs in a worker thread of the broker's own pool, so the event loop is
never blocked; it costs a thread hop per call, which native async backends avoid.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from brokerkit._broker import Broker
from brokerkit._broker_async import AsyncBroker
from brokerkit._delivery import Delivery
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._inspect import TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._subscription import Subscription
from brokerkit._subscription_async import AsyncSubscription
from brokerkit._url import BrokerURL
from brokerkit.exceptions import BrokerClosed, StaleDelivery

__all__ = ["ThreadedAsyncBroker", "threaded", "twin"]

_T = TypeVar("_T")

#: Worker threads per adapted broker: enough for many consumers blocked in a fetch
#: (a second at most each) while publishes and acks still find a thread.
MAX_THREADS = 64


class ThreadedAsyncBroker(AsyncBroker):
    """An :class:`~brokerkit.aio.AsyncBroker` over a sync backend's primitives.

    Made by :func:`threaded`; :func:`brokerkit.aio.connect` uses it for every scheme
    whose plugin registered no native asyncio class. Everything the sync backend
    promises holds, since its own code runs; only the waiting happens in threads.

    :ivar sync: the wrapped sync broker.
    """

    sync_class: ClassVar[type[Broker]]

    def __init__(self, url: BrokerURL, options: BrokerOptions, sync: Broker | None = None) -> None:
        super().__init__(url, options)
        self.sync = sync if sync is not None else self.sync_class(url, options)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            MAX_THREADS, thread_name_prefix=f"brokerkit-{self.describe()}"
        )
        self._pool_shut = False

    @classmethod
    async def open(cls, url: BrokerURL, **options: Any) -> ThreadedAsyncBroker:
        """A broker for ``url``, the sync backend built in a worker thread: building one
        may connect (kombu does), which must not block the event loop."""
        loop = asyncio.get_running_loop()
        abandoned = threading.Event()

        def build() -> Broker:
            sync = cls.sync_class.from_url(url, **options)
            if abandoned.is_set():  # its opener was cancelled meanwhile: nobody's
                sync.close()
            return sync

        building = loop.run_in_executor(None, build)
        try:
            sync = await asyncio.shield(building)
        except asyncio.CancelledError:
            # A worker thread cannot be stopped, and the broker it builds after all
            # is nobody's: it closes it itself if it finishes after this, and one
            # that finished before (its result not taken yet) is closed here.
            abandoned.set()
            building.add_done_callback(functools.partial(_close_unclaimed, loop))
            raise
        return cls(sync.url, sync.options, sync)

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        try:
            running = loop.run_in_executor(self._pool, functools.partial(function, *args))
        except RuntimeError:
            if not self._pool_shut:
                raise
            raise BrokerClosed(f"the broker {self.url} is closed") from None
        return await running

    async def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        await self._run(self.sync._publish, topic, messages)

    async def _publish_delayed(self, topic: str, messages: Sequence[Message], delay: float) -> None:
        await self._run(self.sync._publish_delayed, topic, messages, delay)

    async def _subscribe(self, subscription: AsyncSubscription) -> None:
        inner = twin(Subscription, self.sync, subscription)
        await self._run(self.sync._subscribe, inner)
        subscription.state = inner

    async def _fetch(
        self, subscription: AsyncSubscription, max_messages: int, timeout: float
    ) -> list[AsyncDelivery]:
        inner: Subscription = subscription.state
        fetched = await self._run(self.sync._fetch, inner, max_messages, timeout)
        return [
            AsyncDelivery(d.message, subscription=subscription, attempt=d.attempt, receipt=d)
            for d in fetched
        ]

    async def _unsubscribe(
        self, subscription: AsyncSubscription, unreturned: list[AsyncDelivery]
    ) -> None:
        inner: Subscription = subscription.state
        inner._closed.set()
        await self._run(self.sync._unsubscribe, inner, _inner(unreturned))
        self._mark(unreturned)

    async def _hand_back(self, deliveries: list[AsyncDelivery]) -> None:
        await self._run(self.sync._hand_back, _inner(deliveries))
        self._mark(deliveries)

    async def _ack(self, deliveries: Sequence[AsyncDelivery]) -> None:
        await self._call_inner(self.sync._ack, deliveries, settles=True)

    async def _nack(self, deliveries: Sequence[AsyncDelivery], requeue: bool) -> None:
        await self._call_inner(self.sync._nack, deliveries, requeue, settles=True)

    async def _nack_with(
        self,
        deliveries: Sequence[AsyncDelivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        await self._call_inner(
            self.sync._nack_with, deliveries, requeue, delay, reason, settles=True
        )

    async def _extend(self, deliveries: Sequence[AsyncDelivery], seconds: float) -> None:
        await self._call_inner(self.sync._extend, deliveries, seconds, settles=False)

    async def _call_inner(
        self,
        primitive: Callable[..., None],
        deliveries: Sequence[AsyncDelivery],
        *args: Any,
        settles: bool,
    ) -> None:
        """Run a settling primitive over the wrapped deliveries; a StaleDelivery names
        the caller's own deliveries."""
        inner = _inner(deliveries)
        try:
            await self._run(primitive, inner, *args)
        except StaleDelivery as exc:
            stale = {id(d) for d in exc.deliveries}
            raise StaleDelivery([d for d in deliveries if id(d.receipt) in stale]) from None
        finally:
            if settles:
                Broker._mark(inner)

    async def _suspend_renewals(self) -> None:
        await self._run(self.sync._suspend_renewals)

    async def _inspect(self, topic: str) -> TopicInfo:
        return await self._run(self.sync._inspect, topic)

    async def _purge(self, topic: str) -> int:
        return await self._run(self.sync._purge, topic)

    async def _list_topics(self) -> list[str]:
        return await self._run(self.sync._list_topics)

    async def _close(self) -> None:
        try:
            await self._run(self.sync.close)
        finally:
            self._pool_shut = True
            self._pool.shutdown(wait=False, cancel_futures=True)


_S = TypeVar("_S", Subscription, AsyncSubscription)


def _close_unclaimed(loop: asyncio.AbstractEventLoop, building: asyncio.Future[Broker]) -> None:
    """Close the sync broker a cancelled :meth:`ThreadedAsyncBroker.open` built, in a
    worker thread (closing may wait on the network); closing twice does nothing."""
    if building.cancelled() or building.exception() is not None:
        return
    sync = building.result()
    if sync.closed:
        return
    try:
        loop.run_in_executor(None, sync.close)
    except RuntimeError:  # the loop's executor is shut down: the loop is ending
        sync.close()


def twin(kind: type[_S], broker: Any, subscription: Subscription | AsyncSubscription) -> _S:
    """A subscription of ``kind`` on ``broker`` that reads what ``subscription`` reads:
    the other API's twin, which an adapter hands to the wrapped backend."""
    return kind(
        broker,
        subscription.topic,
        group=subscription.group,
        consumer=subscription.consumer,
        prefetch=subscription.prefetch,
        start=subscription.start,
        pattern=subscription.pattern,
    )


def _inner(deliveries: Sequence[AsyncDelivery]) -> list[Delivery]:
    return [d.receipt for d in deliveries]


@functools.cache
def threaded(sync_class: type[Broker]) -> type[ThreadedAsyncBroker]:
    """The asyncio class that runs ``sync_class`` through worker threads."""
    return type(
        f"Threaded{sync_class.__name__}",
        (ThreadedAsyncBroker,),
        {
            "__doc__": f"{sync_class.__name__} under brokerkit.aio, through worker threads.",
            "__module__": __name__,
            "sync_class": sync_class,
            "schemes": sync_class.schemes,
            "capabilities": sync_class.capabilities,
            "Options": sync_class.Options,
            "driver_query_keys": sync_class.driver_query_keys,
            "extend_beyond_timeout": sync_class.extend_beyond_timeout,
        },
    )
