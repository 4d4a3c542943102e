"""The abstract broker: the public API, built on a handful of backend primitives."""

from __future__ import annotations

import datetime
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from brokerkit._acompat import Event, shielded
from brokerkit._backend_async import AsyncBackend
from brokerkit._capabilities import Capability
from brokerkit._close_calls import closing_calls
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._error_text import value_text
from brokerkit._hooks import RELAY
from brokerkit._inspect import TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._publishing import build_messages, check_bodies
from brokerkit._schedule import check_timeout, publish_delay
from brokerkit._settling_async import AsyncSettling
from brokerkit._subscribing import check_limit, check_subscribe, consumer_name
from brokerkit._subscription_async import AsyncSubscription, lend_fetch
from brokerkit._topics import check_headers, check_topic, dead_letter_topic_of
from brokerkit._url import BrokerURL
from brokerkit.exceptions import BrokerClosed, BrokerError, InvalidOption

__all__ = ["DEFAULT_GROUP", "AsyncBroker"]

#: The group a consumer joins when it names none: one shared work queue per topic.
DEFAULT_GROUP = "default"

_B = TypeVar("_B", bound="AsyncBroker")

#: The longest a second close() waits for the first (bounded by the backend; this only
#: keeps a close from hanging on a bug).
_CLOSE_WAIT = 60.0
#: The longest close() waits for the subscribes under way (a round trip or two each); one
#: that ends later ends its subscription closed, without a word to the backend.
_SUBSCRIBE_WAIT = 5.0


class AsyncBroker(AsyncSettling, AsyncBackend):
    """A connection to a message broker, through one backend.

    Get one with :func:`brokerkit.connect`. Publish with :meth:`publish`, read with
    :meth:`consume` or :meth:`subscribe`, and settle every delivery with
    :meth:`ack` or :meth:`nack`. A broker may be shared between threads;
    a :class:`AsyncSubscription` may not. Under asyncio, threads that each run an
    event loop may share a broker whose backend allows it (memory, the thread adapter;
    a Redis or NATS asyncio broker belongs to the loop that first used it: see
    docs/asyncio.md): a subscription belongs to the loop it was made on, and
    :meth:`close`, called on any of them, closes each subscription on its own loop.

    **Writing a backend.** Subclass, set :attr:`schemes`, :attr:`capabilities` and
    (optionally) :attr:`Options`, and implement the primitives: :meth:`_publish`,
    :meth:`_subscribe`, :meth:`_fetch`, :meth:`_unsubscribe`, :meth:`_ack`,
    :meth:`_nack`, :meth:`_extend`, :meth:`_inspect`, :meth:`_purge` and
    :meth:`_close` (declared, with the defaults of the optional ones, in
    :class:`AsyncBackend`, this class's base). Everything public is concrete code built
    on them, here and in :class:`AsyncSettling` (``ack``, ``nack``, ``extend``):
    validation, encoding, settlement bookkeeping and the consume loop.

    A backend that declares :attr:`Capability.DELAY` also implements
    :meth:`_publish_delayed` and :meth:`_nack_with` (delayed retries, and the reason a
    nack records on a dead letter). A backend that does not keeps its
    :meth:`_publish` and :meth:`_nack` as they are: the base class never passes
    it a delay, and refuses one with :class:`Unsupported`. Any backend that writes
    dead letters may implement :meth:`_nack_with` to record the caller's reason.
    """

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        self.url = url
        self.options = options
        self._closed = False
        self._lock = threading.Lock()
        self._subscriptions: weakref.WeakSet[AsyncSubscription] = weakref.WeakSet()
        # Subscriptions whose close is under way (its caller maybe cancelled): close()
        # waits for those too.
        self._closing: weakref.WeakSet[AsyncSubscription] = weakref.WeakSet()
        # The subscribe() calls under way, which close() waits for before it lists the
        # subscriptions to close; _listed: it has listed them.
        self._subscribing = 0
        self._no_subscribes = Event()
        self._no_subscribes.set()
        self._listed = False
        # Set when close()'s work has ended; a close whose caller was cancelled leaves
        # that work running, kept in _closers.
        self._shut = Event()
        self._closers: set[Any] = set()
        # Set as close() disconnects (the backend's _close begins): a server call after
        # that, by a subscribe the close overtook or a subscription's close that
        # outlasted it, would open a connection nobody closes (a backend skips it).
        self._disconnected = False

    @classmethod
    def from_url(cls: type[_B], url: BrokerURL | str, **options: Any) -> _B:
        """A broker for ``url``, with options from its query string and ``options``;
        an option error names the URL's own scheme."""
        parsed = BrokerURL.parse(url)
        return cls(parsed, cls.options_of(parsed, options))

    # -- publishing ---------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        delay: float | None = None,
        at: datetime.datetime | float | None = None,
    ) -> str:
        """Publish one message and return its id.

        ``bytes`` are sent as they are, ``str`` as UTF-8 text, anything else through
        the broker's serializer (JSON unless the ``serializer`` option says
        ``msgpack``). A ``content_type`` labels bytes as they are (pre-encoded JSON
        under ``application/json``); one that names a serializer encodes any other
        body with it, str included. The message is stored (or, for pub/sub, sent)
        before this returns.

        :param delay: hold the message in the broker for this many seconds: no
            consumer gets it before then (needs :attr:`Capability.DELAY`). ``None``
            or 0 publishes now.
        :param at: hold it until this time instead: a timezone-aware datetime or
            epoch seconds; a time in the past publishes now.
        :raises InvalidTopic: the topic name is not valid.
        :raises InvalidOption: both ``delay`` and ``at``, a negative, NaN or infinite
            delay, or a naive datetime; nothing was sent.
        :raises Unsupported: a delay or ``at`` on a backend without DELAY; nothing was sent.
        :raises SerializationError: the body cannot be encoded; nothing was sent.
        :raises ConnectionFailed: the server could not be reached.
        """
        ids = await self.publish_many(
            topic, (body,), headers=headers, content_type=content_type, delay=delay, at=at
        )
        return ids[0]

    async def publish_many(
        self,
        topic: str,
        bodies: Iterable[Any],
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        delay: float | None = None,
        at: datetime.datetime | float | None = None,
    ) -> list[str]:
        """Publish several messages to one topic, in order, in as few round trips as
        the backend can; return their ids.

        Every body is encoded before anything is sent, so one bad body publishes
        none of them. ``bodies`` is an iterable of bodies: a single str, bytes or
        dict is refused with :class:`InvalidMessage` rather than split up, and so is
        anything that is not an iterable (None, a number).
        ``delay`` and ``at`` apply to all of them, as in :meth:`publish`; messages
        due at the same time come out in the order given.
        """
        self._check_open()
        check_topic(topic)
        held = publish_delay(delay, at, time.time())
        if at is not None or held > 0:
            self.require(Capability.DELAY, "hold a message until a due time (delay=, at=)")
        items = check_bodies(bodies)
        checked_headers = check_headers(headers)
        if RELAY.publish:
            return await self._publish_observed(
                topic, list(items), checked_headers, content_type, held
            )
        messages = build_messages(self, topic, items, checked_headers, content_type)
        await self._store_or_hold(topic, messages, held)
        return [m.id for m in messages]

    async def _publish_observed(
        self,
        topic: str,
        bodies: list[Any],
        headers: dict[str, str],
        content_type: str | None,
        held: float,
    ) -> list[str]:
        """:meth:`publish_many` between the publish hooks, which may add headers."""
        headers = dict(headers)
        scope = RELAY.publish_start(self, topic, headers, len(bodies))
        messages: list[Message] = []
        try:
            messages = build_messages(self, topic, bodies, check_headers(headers), content_type)
            await self._store_or_hold(topic, messages, held)
        except BaseException as exc:
            if scope is not None:
                RELAY.publish_end(self, topic, messages, exc, scope)
            raise
        if scope is not None:
            RELAY.publish_end(self, topic, messages, None, scope)
        return [m.id for m in messages]

    async def _store_or_hold(self, topic: str, messages: list[Message], held: float) -> None:
        """Store ``messages`` now, or held for ``held`` seconds."""
        if messages and held > 0:
            await self._publish_delayed(topic, messages, held)
        elif messages:
            await self._publish(topic, messages)

    # -- consuming ----------------------------------------------------------------

    async def subscribe(
        self,
        topic: str,
        *,
        group: str | None = None,
        consumer: str | None = None,
        prefetch: int = 1,
        start: str | None = None,
        pattern: bool = False,
        prefetch_bytes: int | None = None,
    ) -> AsyncSubscription:
        """Start reading ``topic``; pull deliveries from the returned subscription.

        :param group: consumers of one group share its messages (default: one
            shared group per topic, a work queue). Different groups each get every
            message where the backend has :attr:`Capability.FANOUT`.
        :param consumer: this consumer's name in its group (default: unique).
        :param prefetch: up to this many messages are fetched, and leased, per round trip.
        :param prefetch_bytes: also bound a fetch by payload size: it asks for no more
            messages than fit in this many bytes at the size of the largest message
            this subscription has seen (the first fetch takes one; a message larger
            than the bound comes alone).
        :param start: where a *new* group starts: ``"earliest"``, ``"latest"`` or a
            backend position (needs :attr:`Capability.REPLAY`).
        :param pattern: ``topic`` is a glob such as ``chat:room:*`` (needs
            :attr:`Capability.PATTERNS`).
        :raises InvalidOption: ``pattern`` is not a bool, or a group, consumer,
            prefetch or prefetch_bytes is not valid.
        :raises BrokerClosed: the broker is closed, or was closed while subscribing
            (the subscription made meanwhile is closed before this is raised).
        """
        self._check_open()
        if type(pattern) is not bool:
            # Read by its truth, "false" or "no" would subscribe to a pattern.
            raise InvalidOption(
                "pattern must be True or False (True: topic is a glob such as "
                f"'chat:room:*'), got {value_text(pattern)} ({type(pattern).__name__})"
            )
        check_subscribe(
            self,
            topic,
            group=group,
            consumer=consumer,
            prefetch=prefetch,
            start=start,
            pattern=pattern,
            prefetch_bytes=prefetch_bytes,
        )
        subscription = AsyncSubscription(
            self,
            topic,
            group=group or DEFAULT_GROUP,
            consumer=consumer or consumer_name(),
            prefetch=prefetch,
            start=start,
            pattern=pattern,
            prefetch_bytes=prefetch_bytes,
        )
        with self._lock:
            self._check_open()
            self._subscribing += 1
            self._no_subscribes.clear()
        subscribed = False
        try:
            await self._subscribe(subscription)
            subscribed = True
        except BrokerError as exc:
            if not self._closed:
                raise
            # Failed as the close woke it (a wait for a lost connection, say), or
            # closed meanwhile: the close is what the caller needs to hear of.
            raise BrokerClosed(
                f"the broker {self.url} was closed while subscribing to {topic!r}"
            ) from exc
        finally:
            with self._lock:
                self._subscribing -= 1
                if not self._subscribing:
                    self._no_subscribes.set()
                if subscribed and not self._listed:
                    self._subscriptions.add(subscription)
        if self._closed:
            # Closed meanwhile. close() waits for the subscribes under way, but not for
            # ever (a subscribe may ride out a server restart), and what it finds of
            # them is in a weak set, which drops this subscription as soon as the
            # BrokerClosed below lets it go: its caller never gets it, so it is closed
            # here (a close already under way for it is waited for), leaving nothing
            # open (a pub/sub connection) behind the broker's close.
            await subscription.close()
            self._check_open()
        return subscription

    async def consume(
        self,
        topic: str,
        *,
        group: str | None = None,
        timeout: float | None = None,
        prefetch: int = 1,
        limit: int | None = None,
        consumer: str | None = None,
        start: str | None = None,
        pattern: bool = False,
        prefetch_bytes: int | None = None,
    ) -> AsyncGenerator[AsyncDelivery, None]:
        """Deliveries from ``topic``, one at a time, as an async iterator.

        Stops when no message arrives for ``timeout`` seconds (``None``: never),
        after ``limit`` deliveries, or when the broker is closed. Leaving the loop
        ends the subscription. Every delivery must still be acked or nacked; delivery
        hooks end as in a loop over the subscription itself (``async for``): one not
        settled before the loop is left ends ``"unsettled"``.
        Other parameters as in :meth:`subscribe`.

        :param limit: None (no limit), or a whole number of deliveries, 0 or more.
        :raises InvalidOption: ``timeout`` is neither None nor a finite number of
            seconds (a str, NaN, infinite), or ``limit`` is neither None nor a whole
            number of 0 or more; raised before subscribing.
        """
        timeout = check_timeout(timeout)
        check_limit(limit)
        subscription = await self.subscribe(
            topic,
            group=group,
            consumer=consumer,
            prefetch=prefetch,
            start=start,
            pattern=pattern,
            prefetch_bytes=prefetch_bytes,
        )
        async with subscription:
            count = 0
            while limit is None or count < limit:
                try:
                    delivery = await subscription.receive(timeout)
                except BrokerClosed:
                    return
                if delivery is None:
                    return
                count += 1
                # Delivery hooks end as for a loop over the subscription (see there).
                if delivery._scope is None or subscription._hold(delivery):
                    yield delivery
                else:
                    try:
                        yield delivery
                    finally:
                        RELAY.deliver_end(delivery, "unsettled")

    # -- management ---------------------------------------------------------------

    async def inspect(self, topic: str) -> TopicInfo:
        """A snapshot of ``topic``: length, in-flight deliveries, groups, dead letters."""
        self._check_open()
        return await self._inspect(check_topic(topic))

    async def topics(self) -> list[str]:
        """The names of the topics that hold anything (a message, a group, a delivery
        out, a dead letter), dead-letter topics included, sorted.

        :raises Unsupported: the backend cannot list its topics (the error says so).
        """
        self._check_open()
        return sorted(set(await self._list_topics()))

    async def purge(self, topic: str) -> int:
        """Remove the messages waiting in ``topic``; return how many were removed.

        Deliveries already handed out are not affected.
        """
        self._check_open()
        return await self._purge(check_topic(topic))

    def dead_letter_topic(self, topic: str) -> str:
        """The topic where ``topic``'s dead letters go; consume it like any other.

        It is ``<topic>.dlq``, and that one's is ``<topic>.dlq.dlq``, up to the last
        level, :data:`~brokerkit._topics.MAX_DEAD_LETTER_LEVELS` (10) ``.dlq``
        suffixes: a topic that ends with as many is its own dead-letter topic (a dead
        letter rejected there comes back to it, as a new dead letter with its reason),
        so that names never grow past what a topic may be.

        :raises InvalidTopic: ``topic`` is no valid topic.
        """
        return dead_letter_topic_of(check_topic(topic))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    async def close(self) -> None:
        """End every subscription (handing back what they prefetched) and disconnect.

        The broker is closed when this returns, even if the server could not be
        reached to hand deliveries back (their leases then run out on their own).
        A :meth:`subscribe` under way ends with :class:`BrokerClosed`, its subscription
        closed with the others (close waits for it, and first wakes one that waits
        for a lost connection, where the backend can). Cancelling a close strands
        nothing: the closing goes on to its end and the cancellation is raised at once.
        Calling it again waits for the first call's closing to end, and does nothing
        more.
        """
        with self._lock:
            first = not self._closed
            self._closed = True
        if first:
            # From within a subscription's fetch (an on_gap awaiting it), the closing's
            # task is within it too: that subscription's closing is left to its receive.
            await shielded(lend_fetch(self._shut_down), self._closers)
        else:
            await self._shut.wait(_CLOSE_WAIT)

    def _wake_waits(self) -> None:
        """The broker was just marked closed, and its close begins: make the calls
        under way that wait for something only the close would end (a connection
        lost, and being made again) give up now, raising a :class:`BrokerError`
        (a :meth:`subscribe` then raises :class:`BrokerClosed`), rather than hold up
        the close, which waits for the subscribes under way. Called from any thread,
        and must not wait (no I/O). Optional: by default such a wait ends on its own
        terms (its timeout, or the disconnection at the end of the close).

        A call that reaches its retries after this ran (it passed the open check just
        before) gives up at once all the same, unless
        :func:`~brokerkit._close_calls.by_the_close` says it is one of the close's own
        calls (a hand-back), which retry as before."""
        return

    async def _shut_down(self) -> None:
        """Wait for the subscribes under way, close every subscription, disconnect.

        The hand-backs, unsubscribes and ``_close`` made here are marked as the close's
        own (:func:`~brokerkit._close_calls.closing_calls`): they retry through a lost
        connection as before, where any other call gives up once ``_wake_waits`` ran.
        """
        with closing_calls():
            try:
                self._wake_waits()
                await self._no_subscribes.wait(_SUBSCRIBE_WAIT)
                with self._lock:
                    self._listed = True
                    subscriptions = [*self._subscriptions, *self._closing]
                # All marked closed first, each fetch under way woken (where the backend
                # can) or left to end within a second: then each close finds its receive
                # ended, instead of the next consumer's receive starting a fresh fetch
                # while the close before it waits. Each closes on its own event loop.
                firsts = [subscription._mark_closed() for subscription in subscriptions]
                for subscription, first in zip(subscriptions, firsts, strict=True):
                    await subscription._close_at_home(first)
            finally:
                self._disconnected = True
                try:
                    await self._close()
                finally:
                    self._shut.set()

    async def __aenter__(self: _B) -> _B:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {self.url}{state}>"

    # -- bookkeeping --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed(f"the broker {self.url} is closed")

    def _forget(self, subscription: AsyncSubscription) -> None:
        """``subscription`` is closing: no longer open, its close under way."""
        with self._lock:
            self._subscriptions.discard(subscription)
            self._closing.add(subscription)

    def _let_go(self, subscription: AsyncSubscription) -> None:
        """``subscription``'s close has ended."""
        with self._lock:
            self._closing.discard(subscription)
