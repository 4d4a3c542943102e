"""The thread adapter: a backend that has only sync primitives, under ``brokerkit.aio``.

Each primitive runs in a worker thread of the broker's own pool, so the event loop is
never blocked; it costs a thread hop per call, which native async backends avoid.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from brokerkit._broker import Broker
from brokerkit._broker_async import AsyncBroker
from brokerkit._delivery import Delivery
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._inspect import TopicInfo
from brokerkit._logging import log_fields
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._settling_async import Ending, goes_on
from brokerkit._subscription import Subscription
from brokerkit._subscription_async import AsyncSubscription
from brokerkit._url import BrokerURL
from brokerkit.aio._going_on import GoingOn, outer_stale
from brokerkit.exceptions import BrokerClosed, StaleDelivery

__all__ = ["ThreadedAsyncBroker", "threaded", "twin"]

_T = TypeVar("_T")

log = logging.getLogger("brokerkit")

#: Worker threads per adapted broker: enough for many consumers blocked in a fetch
#: (a second at most each) while publishes and acks still find a thread.
MAX_THREADS = 64

#: The longest a close waits for the acks and nacks that their callers' cancellation
#: left running in worker threads, before it closes the sync broker under them.
SETTLE_WAIT = 5.0

#: How often a worker thread that handed the end of an ack or nack to the event loop
#: looks whether the loop still runs, until the loop begins it (seconds).
_LOOK_AGAIN = 0.1


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
        #: Acks and nacks whose callers were cancelled while their worker threads went on.
        self._going_on = GoingOn("in its worker thread")

    @classmethod
    async def open(cls, url: BrokerURL, **options: Any) -> ThreadedAsyncBroker:
        """A broker for ``url``, the sync backend built in a worker thread: building one
        may connect (kombu does), which must not block the event loop."""
        loop = asyncio.get_running_loop()
        abandoned = threading.Event()

        def build() -> Broker:
            sync = _no_stop_iteration(cls.sync_class.from_url, url, **options)
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
        return await asyncio.wrap_future(self._submit(function, *args))

    def _submit(self, function: Callable[..., _T], *args: Any) -> concurrent.futures.Future[_T]:
        """``function(*args)`` started in a worker thread (a StopIteration it raises
        comes as a RuntimeError: see :func:`_no_stop_iteration`)."""
        try:
            return self._pool.submit(_no_stop_iteration, function, *args)
        except RuntimeError:
            if not self._pool_shut:
                raise
            raise BrokerClosed(f"the broker {self.url} is closed") from None

    async def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        await self._run(self.sync._publish, topic, messages)

    async def _publish_delayed(self, topic: str, messages: Sequence[Message], delay: float) -> None:
        await self._run(self.sync._publish_delayed, topic, messages, delay)

    async def _subscribe(self, subscription: AsyncSubscription) -> None:
        """The sync subscribe, in a worker thread. A worker thread cannot be stopped:
        if the caller is cancelled (``wait_for`` running out, ``task.cancel()``) once
        the thread has begun, its subscribe goes on, and what it makes (kombu+amqp's
        reader, whose queue is bound again at every rebind round) would be held by the
        sync broker and listed by nobody until the broker closes. It is closed as soon
        as the thread's call ends (:meth:`_abandon_subscribe`); cancelled before the
        thread began it, it subscribes nothing."""
        inner = _Twin(self.sync, subscription)
        call = self._submit(self.sync._subscribe, inner)
        try:
            await asyncio.wrap_future(call)
        except BaseException as exc:
            given_up = not (call.done() and (call.cancelled() or call.exception() is exc))
            # (given up: not raised by the subscribe; going on: its thread has it)
            if given_up and not call.cancel():
                call.add_done_callback(functools.partial(self._abandon_subscribe, inner))
            raise
        subscription.state = inner

    def _abandon_subscribe(
        self, inner: Subscription, call: concurrent.futures.Future[None]
    ) -> None:
        """Close ``inner`` in a worker thread, if the subscribe given up (``call``)
        made it after all. Called where ``call`` ended (its worker thread), or on the
        loop if it had ended already: the close may wait on the network, so it runs in
        a thread of its own. A broker closing by then closes everything itself."""
        if call.cancelled() or call.exception() is not None:
            return
        inner._closed.set()
        with contextlib.suppress(BrokerClosed, RuntimeError):  # (shut: the broker closes)
            self._submit(_close_abandoned, self.sync, inner)

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
        the caller's own deliveries.

        A worker thread cannot be stopped: if the caller is cancelled once its thread
        has started an ack or nack (``settles``), the sync primitive goes on, and may
        settle the deliveries on the server yet. The cancellation says so
        (:func:`goes_on`): the deliveries stay being settled until the thread's call
        ends, and how it ends settles or unsettles them (:meth:`_when_ended`). A
        cancelled extend marks nothing, and its thread is left to end on its own.
        """
        inner = _inner(deliveries)
        if settles:
            call = self._submit(_settle_in_thread, primitive, inner, args)
        else:
            call = self._submit(primitive, inner, *args)
        try:
            await asyncio.wrap_future(call)
        except StaleDelivery as exc:
            raise outer_stale(exc, deliveries) from None
        except asyncio.CancelledError as exc:
            if settles and not call.cancel():  # its thread has it: it goes on
                goes_on(exc, functools.partial(self._when_ended, call, deliveries))
            raise

    def _when_ended(
        self,
        call: concurrent.futures.Future[None],
        deliveries: Sequence[AsyncDelivery],
        ending: Ending,
    ) -> None:
        """Once ``call`` (an ack or nack whose caller was cancelled) has ended in its
        worker thread, settle or unsettle ``deliveries`` by how it ended (``ending``):
        on this event loop, where the hooks are told as for a call not cancelled; in
        the worker thread if the loop no longer runs by then (an ``asyncio.run`` that
        returned), whose callbacks might never run.

        Handed to the loop in its last turn (``asyncio.run`` returning: the loop stops
        after that turn, running nothing scheduled since it began, then is closed), the
        end would never run there: the worker thread waits until the loop has begun
        it, looking every :data:`_LOOK_AGAIN` seconds whether the loop still runs, and
        runs it itself once the loop has stopped without. It runs once, whichever of
        the two begins it (the loop may be run again later, and run what it kept). A
        call that had ended by the time its caller was cancelled is ended at once, on
        the loop."""
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def run_end(end: Callable[[], None]) -> None:
            if threading.get_ident() == loop_thread:
                # The call had ended by the time its caller was cancelled: the end is
                # run here and now, on the loop (waiting for the loop to begin it
                # would wait for itself).
                end()
                return
            once = _Once(end)
            if loop.is_running():
                try:
                    loop.call_soon_threadsafe(once)
                except RuntimeError:  # closed meanwhile
                    pass
                else:
                    while not once.begun.wait(_LOOK_AGAIN):
                        if not loop.is_running():
                            break
            once()

        self._going_on.follow(call, deliveries, ending, run_end)

    async def _threads_settled(self, timeout: float) -> bool:
        """Wait (``timeout`` seconds at most) until the acks and nacks that cancelled
        callers left running in worker threads have ended and settled or unsettled
        their deliveries; whether they all have."""
        # Waited for in a thread: they may be ended on another loop, or in a thread.
        return await self._run(self._going_on.wait, timeout)

    async def _suspend_renewals(self) -> None:
        await self._run(self.sync._suspend_renewals)

    async def _inspect(self, topic: str) -> TopicInfo:
        return await self._run(self.sync._inspect, topic)

    async def _purge(self, topic: str) -> int:
        return await self._run(self.sync._purge, topic)

    async def _list_topics(self) -> list[str]:
        return await self._run(self.sync._list_topics)

    async def _shut_down(self) -> None:
        """The broker's close: lets the acks and nacks that cancelled callers left
        running in worker threads finish (``SETTLE_WAIT`` at most: they land, rather
        than being cut off by the halt, and their deliveries are settled or unsettled
        when the close returns); then ends the calls of the sync backend stuck on the
        network, if it can (see :func:`_halt_sync`), closes every subscription and
        disconnects as every broker does."""
        await self._threads_settled(SETTLE_WAIT)
        await _halt_sync(self)
        await super()._shut_down()

    async def _close(self) -> None:
        try:
            await self._run(self.sync.close)
        finally:
            self._pool_shut = True
            self._pool.shutdown(wait=False, cancel_futures=True)


_S = TypeVar("_S", Subscription, AsyncSubscription)


async def _halt_sync(broker: ThreadedAsyncBroker) -> None:
    """Run the sync backend's ``_halt()``, if it has one, in a worker thread.

    The hook: a sync backend whose calls may wait on the network for long (a server
    that stopped answering) defines ``_halt(self) -> None``, which must end those
    waits and stop reconnecting (its own ``close()`` calls it first), leaving the
    closing itself to ``close()``. The adapter's close runs it before it closes the
    subscriptions, each of which waits for its fetch under way and hands back in a
    worker thread: without it, they would wait out the silent server (the adapter
    closes the sync broker, whose close halts first, only after them). kombu+amqp
    defines it.
    """
    halt = getattr(broker.sync, "_halt", None)
    if halt is None or broker.sync.closed:
        return
    try:
        await broker._run(halt)
    except Exception as exc:  # the close goes on: it ends in bounded time anyway
        log.warning("could not halt %s before closing it: %r", broker.url, exc, extra=log_fields())


def _close_abandoned(sync: Broker, inner: Subscription) -> None:
    """Close the subscription a subscribe whose caller gave it up made all the same
    (in a worker thread); a failure is logged: nobody is left to tell."""
    try:
        sync._unsubscribe(inner, [])
    except Exception as exc:
        log.warning(
            "could not close the subscription to %r of a cancelled subscribe: %r",
            inner.topic,
            exc,
            extra=log_fields(),
        )


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
    return kind(broker, subscription.topic, **_twin_options(subscription))


def _twin_options(subscription: Subscription | AsyncSubscription) -> dict[str, Any]:
    """What a subscription's twin takes of it, beside its topic."""
    return {
        "group": subscription.group,
        "consumer": subscription.consumer,
        "prefetch": subscription.prefetch,
        "prefetch_bytes": subscription.prefetch_bytes,
        "start": subscription.start,
        "pattern": subscription.pattern,
    }


class _Twin(Subscription):
    """The twin of an asyncio subscription that the adapter hands to the sync backend.
    What the backend fetches for it does not wait in its own buffer but in the
    asyncio subscription's, each delivery wrapped in an :class:`AsyncDelivery` whose
    receipt it is."""

    def __init__(self, broker: Broker, subscription: AsyncSubscription) -> None:
        super().__init__(broker, subscription.topic, **_twin_options(subscription))
        self._outer = weakref.ref(subscription)

    def take_buffered(self, void: Callable[[Delivery], bool]) -> list[AsyncDelivery]:
        """The hook for a sync backend that finds, in the background, deliveries it
        fetched for this subscription void (their lease gone), so that no receive hands
        them out: a backend looks it up with ``getattr(subscription, "take_buffered",
        None)`` (kombu+amqp does), and without it takes them out of the subscription's
        own buffer.

        Takes out of the asyncio subscription's buffer the deliveries whose sync
        delivery ``void`` says, each one once (one a receive takes meanwhile is left to
        it: it is handed out), from any thread; marks them, and theirs, settled here
        (nothing is sent); and returns them, as the application would have received
        them.
        """
        subscription = self._outer()
        if subscription is None:
            return []
        buffer = subscription._buffer
        taken = []
        for delivery in [d for d in list(buffer) if void(d.receipt)]:
            try:
                buffer.remove(delivery)
            except ValueError:  # received meanwhile
                continue
            taken.append(delivery)
        AsyncBroker._mark(taken)
        Broker._mark(_inner(taken))
        return taken


class _Once:
    """``work()``, called from any thread, run by the first call alone."""

    def __init__(self, work: Callable[[], None]) -> None:
        self._work = work
        self._lock = threading.Lock()
        #: set once a call has begun the work
        self.begun = threading.Event()

    def __call__(self) -> None:
        with self._lock:
            if self.begun.is_set():
                return
            self.begun.set()
        self._work()


def _inner(deliveries: Sequence[AsyncDelivery]) -> list[Delivery]:
    return [d.receipt for d in deliveries]


def _settle_in_thread(
    primitive: Callable[..., None], inner: list[Delivery], args: tuple[Any, ...]
) -> None:
    """Run the sync settling ``primitive`` (in a worker thread); its deliveries are
    settled on the sync side once it has run, however it ended."""
    try:
        _no_stop_iteration(primitive, inner, *args)
    finally:
        Broker._mark(inner)


def _no_stop_iteration(function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """``function(*args, **kwargs)`` (in a worker thread), a StopIteration it raises
    turned into a RuntimeError from it, as a coroutine's becomes. asyncio refuses a
    StopIteration as a future's exception (the loop logs "StopIteration interacts
    badly with generators" and drops it): a sync backend's primitive that raised one
    (a ``next()`` on an empty iterator) left its awaiting caller waiting for ever."""
    try:
        return function(*args, **kwargs)
    except StopIteration as exc:
        name = getattr(function, "__qualname__", None) or type(function).__name__
        try:
            text = f": {exc}" if str(exc) else ""
        except Exception:
            text = ""
        raise RuntimeError(f"the sync backend's {name} raised StopIteration{text}") from exc


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
            "extend_shortens": sync_class.extend_shortens,
        },
    )
