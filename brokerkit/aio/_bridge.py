"""The loop bridge: a backend that has only asyncio primitives, under the sync API.

The mirror of the thread adapter (:mod:`brokerkit.aio._threaded`): a sync
:class:`~brokerkit.Broker` whose primitives run the async backend's on a private event
loop in a thread of the broker's own. A plugin whose driver is asyncio-only (nats-py)
registers ``bridged(AsyncClass)`` as its sync class.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar, TypeVar

from brokerkit._broker import Broker
from brokerkit._broker_async import AsyncBroker
from brokerkit._compat import leaves_running
from brokerkit._delivery import Delivery
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._inspect import TopicInfo
from brokerkit._logging import delivery_fields, log_fields
from brokerkit._loop_thread import LoopThread
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._settling import Ending, goes_on
from brokerkit._subscription import Subscription
from brokerkit._subscription_async import AsyncSubscription
from brokerkit._url import BrokerURL
from brokerkit.aio._going_on import GoingOn, outer_stale
from brokerkit.aio._threaded import SETTLE_WAIT, twin
from brokerkit.exceptions import StaleDelivery

__all__ = ["LoopBridgeBroker", "bridged"]

_T = TypeVar("_T")

log = logging.getLogger("brokerkit")

#: The longest the garbage collector's close of a bridge dropped unclosed may take.
_RELEASE_WAIT = 10.0


class LoopBridgeBroker(Broker):
    """A sync :class:`~brokerkit.Broker` over an asyncio backend's primitives.

    Made by :func:`bridged`. Everything the async backend promises holds, since its own
    code runs; each call waits for it on the bridge's event loop.

    :ivar inner: the wrapped asyncio broker.
    """

    async_class: ClassVar[type[AsyncBroker]]

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        self._loop = LoopThread(f"brokerkit-{self.describe()}")

        async def make() -> AsyncBroker:
            return self.async_class(url, options)

        try:
            self.inner = self._loop.run(make())
        except BaseException:
            self._loop.stop()
            raise
        # Dropped unclosed, the broker takes its connection and loop thread with it
        # (the finalizer holds the loop thread and the inner broker, never this one).
        self._release = weakref.finalize(self, _release_dropped, self._loop, self.inner)
        #: Acks and nacks whose callers were interrupted while their coroutines went on.
        self._going_on = GoingOn("on the event loop")

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return self._loop.run(coroutine)

    def _start(self, coroutine: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """``coroutine`` started on the loop, as :meth:`LoopThread.run` does, unwaited."""
        if threading.current_thread() is self._loop._thread:
            coroutine.close()
            raise RuntimeError("a loop bridge called from its own loop: it would deadlock")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop.loop)

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        self._run(self.inner._publish(topic, messages))

    def _publish_delayed(self, topic: str, messages: Sequence[Message], delay: float) -> None:
        self._run(self.inner._publish_delayed(topic, messages, delay))

    def _subscribe(self, subscription: Subscription) -> None:
        """The asyncio subscribe, run on the bridge's loop. If the wait for it is
        interrupted (Ctrl-C: a KeyboardInterrupt in this thread), what it subscribes
        does not outlive the interruption (nobody would hold it, nor read what the
        server sends it): the subscribe is cancelled on the loop (the backend undoes
        what it has made so far), and one that ended all the same is closed at once
        (:meth:`_abandon_subscribe`). Interrupted before the loop began it, it
        subscribes nothing."""
        given_up = threading.Event()
        began: list[asyncio.Future[AsyncSubscription | None]] = []

        async def subscribe() -> AsyncSubscription | None:
            if given_up.is_set():
                return None
            task = asyncio.current_task()
            assert task is not None
            began.append(task)
            inner = twin(AsyncSubscription, self.inner, subscription)
            await self.inner._subscribe(inner)
            return inner

        future = self._start(subscribe())
        try:
            subscription.state = future.result()
        except BaseException as exc:
            if not (future.done() and (future.cancelled() or future.exception() is exc)):
                # Raised into this thread, not by the subscribe: it is given up.
                given_up.set()
                self._start(self._abandon_subscribe(began))
            raise

    async def _abandon_subscribe(
        self, began: list[asyncio.Future[AsyncSubscription | None]]
    ) -> None:
        """Undo a subscribe whose caller was interrupted (on the loop): cancel it if it
        runs yet, and close the subscription it made if it ended with one. ``began``
        holds it once it began; if it has not, it never subscribes (it was given up
        first)."""
        if not began:
            return
        subscribing = began[0]
        subscribing.cancel()
        await asyncio.wait([subscribing])
        if subscribing.cancelled() or subscribing.exception() is not None:
            return
        inner = subscribing.result()
        if inner is None:
            return
        inner._closed.set()
        try:
            await self.inner._unsubscribe(inner, [])
        except Exception as exc:
            log.warning(
                "could not close the subscription to %r of an interrupted subscribe: %s",
                inner.topic,
                exc,
                extra=log_fields(),
            )

    def _fetch(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        """The asyncio fetch, run on the bridge's loop. If the wait for it is
        interrupted (Ctrl-C: a KeyboardInterrupt in this thread), the fetch is not
        stopped (cut off half-way, it could leave messages leased that nobody holds):
        it goes on, and what it brings is handed back as soon as it ends, on the loop
        (:meth:`_hand_back_fetched`); the subscription's next receive, and its close,
        wait for that first (:func:`brokerkit._compat.leaves_running`). Interrupted
        before the loop began it, it fetches nothing."""
        inner: AsyncSubscription = subscription.state
        given_up = threading.Event()

        async def fetch() -> list[Delivery]:
            if given_up.is_set():
                return []
            fetched = await self.inner._fetch(inner, max_messages, timeout)
            # (on the loop, before anything else of the inner broker runs there again)
            return [self._wrapped(subscription, delivery) for delivery in fetched]

        future = self._start(fetch())
        try:
            return future.result()
        except BaseException as exc:
            if not (future.done() and (future.cancelled() or future.exception() is exc)):
                # Raised into this thread, not by the fetch: it goes on.
                given_up.set()
                leaves_running(exc, self._start(self._hand_back_fetched(future)))
            raise

    def _wrapped(self, subscription: Subscription, delivery: AsyncDelivery) -> Delivery:
        """The sync delivery over ``delivery``, which a fetch brought (called on the
        bridge's loop)."""
        return Delivery(
            delivery.message, subscription=subscription, attempt=delivery.attempt, receipt=delivery
        )

    async def _hand_back_fetched(self, fetch: concurrent.futures.Future[list[Delivery]]) -> None:
        """Once ``fetch`` (whose caller was interrupted) ends, hand back what it
        brought, at once (on the loop)."""
        try:
            fetched = await asyncio.wrap_future(fetch)
        except Exception:  # the fetch failed: it leased nothing it could report
            return
        if fetched:
            try:
                await self.inner._hand_back(_inner(fetched))
            except Exception as exc:
                log.warning(
                    "could not hand back deliveries of an interrupted receive: %s",
                    exc,
                    extra=delivery_fields(fetched),
                )

    def _unsubscribe(self, subscription: Subscription, unreturned: list[Delivery]) -> None:
        inner: AsyncSubscription = subscription.state

        async def unsubscribe() -> None:
            inner._closed.set()
            await self.inner._unsubscribe(inner, _inner(unreturned))

        self._run(unsubscribe())
        self._mark(unreturned)

    def _hand_back(self, deliveries: list[Delivery]) -> None:
        self._run(self.inner._hand_back(_inner(deliveries)))
        self._mark(deliveries)

    def _ack(self, deliveries: Sequence[Delivery]) -> None:
        self._call_inner(self.inner._ack, deliveries, settles=True)

    def _nack(self, deliveries: Sequence[Delivery], requeue: bool) -> None:
        self._call_inner(self.inner._nack, deliveries, requeue, settles=True)

    def _nack_with(
        self,
        deliveries: Sequence[Delivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        self._call_inner(self.inner._nack_with, deliveries, requeue, delay, reason, settles=True)

    def _extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        self._call_inner(self.inner._extend, deliveries, seconds, settles=False)

    def _call_inner(
        self, primitive: Any, deliveries: Sequence[Delivery], *args: Any, settles: bool
    ) -> None:
        """Run a settling primitive over the wrapped deliveries; a StaleDelivery names
        the caller's own deliveries.

        If the caller's wait is interrupted (a KeyboardInterrupt, or anything raised
        into its thread) once the loop has started an ack or nack (``settles``), the
        coroutine goes on, and may settle the deliveries on the server yet: cancelling
        it mid-flight would leave unknown whether it did. The interruption says so
        (:func:`goes_on`): the deliveries stay being settled until the coroutine ends,
        and how it ends settles or unsettles them (:meth:`_when_ended`). An
        interrupted extend marks nothing, and its coroutine is left to end on its own.
        """
        inner = _inner(deliveries)
        # The ack or nack: cancelled by an interrupted caller before the loop began it,
        # or made running (no longer cancellable) by the loop as it begins, and ended
        # with its outcome. Made before anything is sent, so that an interruption at
        # any point finds it.
        call: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            if settles:
                scheduled = self._start(_settle_on_loop(call, primitive, inner, args))
                scheduled.add_done_callback(functools.partial(_never_began, call))
                call.result()
            else:
                self._run(primitive(inner, *args))
        except StaleDelivery as exc:
            raise outer_stale(exc, deliveries) from None
        except BaseException as exc:
            if settles and not _outcome_of(call, exc) and not call.cancel():
                goes_on(exc, functools.partial(self._when_ended, call, deliveries))
            raise

    def _when_ended(
        self,
        call: concurrent.futures.Future[None],
        deliveries: Sequence[Delivery],
        ending: Ending,
    ) -> None:
        """Once ``call`` (an ack or nack whose caller was interrupted) has ended on the
        loop, settle or unsettle ``deliveries`` by how it ended (``ending``), the hooks
        told as for a call not interrupted: in a thread of its own, not the loop's (a
        hook may call the bridge, which its own loop cannot serve)."""

        def run_end(end: Callable[[], None]) -> None:
            try:
                threading.Thread(target=end, name="brokerkit-settled", daemon=True).start()
            except RuntimeError:  # no new thread: the interpreter is ending
                end()

        self._going_on.follow(call, deliveries, ending, run_end)

    def _suspend_renewals(self) -> None:
        self._run(self.inner._suspend_renewals())

    def _inspect(self, topic: str) -> TopicInfo:
        return self._run(self.inner._inspect(topic))

    def _purge(self, topic: str) -> int:
        return self._run(self.inner._purge(topic))

    def _list_topics(self) -> list[str]:
        return self._run(self.inner._list_topics())

    def close(self) -> None:
        """As :meth:`Broker.close`; but called on the bridge's own event loop (by a
        coroutine or callback running there), it raises :class:`RuntimeError` at once
        and closes nothing, as every call made from there does: closing needs that
        loop, and nothing else runs on it while the close waits there. Called again in
        the end of an interrupted ack or nack (a settlement hook) while a first close
        waits for that end, it returns at once: the first close ends once it has."""
        if threading.current_thread() is self._loop._thread:
            raise RuntimeError("a loop bridge closed from its own loop: it would deadlock")
        if self.closed and self._going_on.ending_here():
            return
        super().close()

    def _shut_down(self) -> None:
        """The broker's close: lets the acks and nacks that interrupted callers left
        running on the loop finish (``SETTLE_WAIT`` at most: they land, rather than
        being cut off, and their deliveries are settled or unsettled when the close
        returns), then closes as every broker does, cancelling what still runs. A close
        made in the end of one of them (by a settlement hook) does not wait for that
        one, which cannot end before the close does (see :meth:`GoingOn.wait`)."""
        try:
            self._going_on.wait(SETTLE_WAIT)
        finally:  # (a second Ctrl-C during the wait closes all the same)
            super()._shut_down()

    def _close(self) -> None:
        self._release.detach()
        try:
            self._run(self.inner.close())
        finally:
            self._loop.stop()


def _release_dropped(loop: LoopThread, inner: AsyncBroker) -> None:
    """Close the asyncio broker of a bridge dropped unclosed and end its loop thread,
    waiting :data:`_RELEASE_WAIT` seconds at most for the close; what fails is logged
    (the garbage collector, which calls this, has nobody to raise to)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # collected on an event loop (the bridge's own, maybe): not a place to wait
        threading.Thread(
            target=_release_dropped, args=(loop, inner), name="brokerkit-release", daemon=True
        ).start()
        return
    try:
        loop.run(inner.close(), timeout=_RELEASE_WAIT)
    except Exception as exc:
        log.warning("could not close %s, dropped unclosed: %r", inner.url, exc, extra=log_fields())
    finally:
        try:
            loop.stop()
        except Exception as exc:
            log.warning(
                "could not stop the event loop of %s: %r", inner.url, exc, extra=log_fields()
            )


def _inner(deliveries: Sequence[Delivery]) -> list[AsyncDelivery]:
    return [d.receipt for d in deliveries]


async def _settle_on_loop(
    call: concurrent.futures.Future[None],
    primitive: Any,
    inner: list[AsyncDelivery],
    args: tuple[Any, ...],
) -> None:
    """Run the async settling ``primitive`` (on the bridge's loop) and end ``call``
    with its outcome, unless its caller gave it up before it began (``call``
    cancelled); its deliveries are settled on the async side once it has run, however
    it ended."""
    if not call.set_running_or_notify_cancel():
        return
    try:
        await primitive(inner, *args)
    except BaseException as exc:
        AsyncBroker._mark(inner)
        call.set_exception(exc)
        if not isinstance(exc, Exception):  # a cancellation goes on as one
            raise
        return
    AsyncBroker._mark(inner)
    call.set_result(None)


def _never_began(call: concurrent.futures.Future[None], scheduled: object) -> None:
    """``call``'s coroutine ended (``scheduled``) without beginning it: cancelled by
    the loop's stop before its first step. ``call`` is cancelled too, so that no caller
    waits for it for ever."""
    if not call.done():
        call.cancel()


def _outcome_of(call: concurrent.futures.Future[None], exc: BaseException) -> bool:
    """Whether ``exc``, raised while waiting for ``call``, is how ``call`` ended,
    rather than something raised into the waiting thread."""
    if call.cancelled():
        return isinstance(exc, concurrent.futures.CancelledError)
    return call.done() and call.exception() is exc


@functools.cache
def bridged(async_class: type[AsyncBroker]) -> type[LoopBridgeBroker]:
    """The sync class that runs ``async_class`` on a private event loop."""
    return type(
        async_class.__name__.removeprefix("Async"),
        (LoopBridgeBroker,),
        {
            "__doc__": f"{async_class.__name__} under the sync API, on a private event loop.",
            "__module__": async_class.__module__,
            "async_class": async_class,
            "schemes": async_class.schemes,
            "capabilities": async_class.capabilities,
            "Options": async_class.Options,
            "driver_query_keys": async_class.driver_query_keys,
            "extend_beyond_timeout": async_class.extend_beyond_timeout,
            "extend_shortens": async_class.extend_shortens,
        },
    )
