"""``kombu+memory://`` and ``kombu+redis://``: kombu's *virtual* transports.

kombu emulates AMQP over stores that have no broker of their own
(:mod:`kombu.transport.virtual`): a queue is a list, an exchange is a table of
bindings. This backend keeps only the promises such a transport can keep:

* a topic is a **direct exchange** ``<prefix>|<topic>``; a group is a queue
  ``<prefix>|<topic>|<group>`` bound to it with the empty routing key, so every group
  gets its own copy of every message (FANOUT) and the members of a group take turns
  at one list (COMPETING). A *fanout* exchange is not used: on Redis kombu carries
  fanout over pub/sub, which keeps nothing for a consumer that is not listening.
  Publishing declares the topic's default-group queue, so that a message waits for
  its first consumer (PERSISTENT: in Redis; for ``memory``, in this process only).
* a fetch is ``basic_get`` with ``no_ack``: the message leaves the queue when it is
  fetched (**at most once**); on Redis, what another program pushed that is not
  kombu's message comes out raw (see :meth:`KombuVirtualBroker._get`). Virtual
  transports count no deliveries and confirm no publish, so this backend declares
  no ACK, DEAD_LETTER, REPLAY, PATTERNS or BOUNDED;
  :meth:`~brokerkit.Broker.ack` and :meth:`~brokerkit.Broker.nack` only mark a
  delivery settled. Messages fetched but never handed to the caller are kept for
  the subscription's next fetch while it is open (a receive cut off by a timeout or
  a cancellation: ORDERED holds), and put back on their queue, at its end, by its
  close (see :meth:`KombuVirtualBroker._hand_back`).
* an empty queue is polled (every ``_POLL`` seconds) until the receive's deadline:
  ``basic_get`` is the one read every virtual transport has. The wait between two
  polls holds no lock.
* kombu's ``memory`` store is one per process and not thread-safe, so every
  ``kombu+memory`` broker of the process uses it under one lock, ``_MEMORY_STORE``
  (see there). A ``kombu+redis`` store is the server's: each broker has a lock of its
  own, for its own connection.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

from kombu.connection import Connection as KombuConnection
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from brokerkit._broker import DEFAULT_GROUP, Broker
from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit._inspect import GroupInfo, TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._secret_options import shown_path
from brokerkit._subscription import Subscription
from brokerkit._url import BrokerURL
from brokerkit.backends.kombu._envelope import decode, encode
from brokerkit.backends.kombu._names import Names
from brokerkit.backends.kombu._options import KombuVirtualOptions
from brokerkit.exceptions import ConnectionFailed, InvalidOption, InvalidURL

__all__ = ["KombuVirtualBroker"]

#: How often an empty queue is asked again during a receive.
_POLL = 0.01

#: The I/O lock of every ``kombu+memory`` broker of the process. kombu's memory
#: transport keeps one store per process (its queues and its exchanges' routing tables
#: are class attributes, shared by every connection), and nothing in it is thread-safe:
#: two brokers declaring the same exchange or queue at once could each find it missing
#: and create it, the second replacing the first's routing table (a binding kombu still
#: records, so nothing binds again and later publishes to the topic went nowhere) or
#: queue (and the message in it); and a purge counted a queue, then cleared it with
#: another broker's publish in between. Held only while kombu is called, never while a
#: receive waits for its next poll.
_MEMORY_STORE = threading.RLock()

_T = TypeVar("_T")


class KombuVirtualBroker(Broker):
    """One of kombu's virtual transports (``memory``, ``redis``), at most once."""

    schemes: ClassVar[tuple[str, ...]] = ("kombu+memory", "kombu+redis")
    capabilities: ClassVar[Capability] = (
        Capability.PERSISTENT | Capability.COMPETING | Capability.FANOUT | Capability.ORDERED
    )
    Options: ClassVar[type[BrokerOptions]] = KombuVirtualOptions
    options: KombuVirtualOptions

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        self.transport = url.scheme.split("+", 1)[1]
        self.names = Names(self.options.prefix)
        self._connection = _connection(url, self.transport, self.options.connect_timeout)
        #: kombu connections and channels are not thread-safe: every use holds this.
        #: ``memory``: the process's one store is not either, so it is one lock for
        #: every such broker of the process.
        self._io = _MEMORY_STORE if self.transport == "memory" else threading.RLock()
        self._channel: Any = None
        self._declared: set[str] = set()
        #: Queues declared and bound over the current channel.
        self._bound: set[str] = set()
        self._exchanges: set[str] = set()
        self._groups: dict[str, set[str]] = {}
        self._stop = threading.Event()
        #: What open subscriptions fetched and handed back unread, for their next fetch;
        #: put back on the queue at the subscription's close, or the broker's (a kept
        #: delivery refers to its subscription, so an entry lives until one of them).
        self._kept: weakref.WeakKeyDictionary[Subscription, collections.deque[Delivery]] = (
            weakref.WeakKeyDictionary()
        )
        self._kept_lock = threading.Lock()
        self._call(lambda: None)  # connect now: an unreachable server fails here

    # -- the connection -----------------------------------------------------------

    def _call(self, work: Callable[[], _T], *, retry: bool = False) -> _T:
        """Run ``work`` under the I/O lock; a transport error is ConnectionFailed
        (naming the URL without its password). With ``retry`` (reads and
        declarations: safe to repeat), reconnect with backoff for up to
        ``reconnect_timeout`` seconds first."""
        connection = self._connection
        errors = (*connection.connection_errors, *connection.channel_errors, OSError)
        gave_up = time.monotonic() + self.options.reconnect_timeout
        backoff = 0.05
        while True:
            with self._io:
                try:
                    if self._channel is None:
                        self._channel = connection.channel()
                        if self.transport == "redis":
                            self._channel.client.ping()
                    return work()
                except errors as error:
                    self._drop_channel()
                    failure = ConnectionFailed(
                        f"{self.url} failed: {type(error).__name__}: {error}"
                    )
            left = gave_up - time.monotonic()
            if not retry or left <= 0 or self._closed:
                raise failure from None
            self._stop.wait(min(backoff, left))
            backoff = min(backoff * 2, 1.0)

    def _drop_channel(self) -> None:
        channel, self._channel = self._channel, None
        self._bound.clear()
        if channel is not None:
            with contextlib.suppress(Exception):  # it is being thrown away
                channel.close()

    def _ensure_queue(self, topic: str, group: str) -> str:
        """Declare the topic's exchange and the group's queue, bound to it (once)."""
        exchange = self.names.exchange(topic)
        queue = self.names.queue(topic, group)
        if queue not in self._bound:
            channel = self._channel
            channel.exchange_declare(exchange, type="direct", durable=True, auto_delete=False)
            channel.queue_declare(queue, durable=True, auto_delete=False)
            channel.queue_bind(queue, exchange, routing_key="")
            self._exchanges.add(exchange)
            self._declared.add(queue)
            self._bound.add(queue)
        return queue

    @property
    def declared(self) -> tuple[frozenset[str], frozenset[str]]:
        """``(exchanges, queues)`` this broker declared: they outlive it (in Redis,
        until someone deletes them; ``memory``: until the process ends)."""
        with self._io:
            return frozenset(self._exchanges), frozenset(self._declared)

    def delete(self, exchanges: frozenset[str], queues: frozenset[str]) -> None:
        """Delete these queues (their bindings and messages) and exchanges, named as
        :attr:`declared` names them; only names under this broker's prefix."""
        head = f"{self.names.prefix}|"
        foreign = sorted(n for n in exchanges | queues if not n.startswith(head))
        if foreign:
            raise InvalidOption(f"not a name under the prefix {self.names.prefix!r}: {foreign}")

        def delete() -> None:
            for queue in sorted(queues):
                topic, group = queue[len(head) :].rsplit("|", 1)
                # Bound over this channel first: kombu deletes a queue's list and
                # binding-table entries through the bindings its channel knows.
                self._ensure_queue(topic, group)
                self._channel.queue_delete(queue)
                # ... and leaves the exchange's routing table to queue_unbind.
                self._channel.queue_unbind(queue, self.names.exchange(topic), "")
                self._declared.discard(queue)
                self._bound.discard(queue)
            for exchange in sorted(exchanges):
                with contextlib.suppress(KeyError):  # kombu's memory store: already gone
                    self._channel.exchange_delete(exchange)
                self._exchanges.discard(exchange)

        self._call(delete)

    # -- publishing ---------------------------------------------------------------

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        def send() -> None:
            exchange = self.names.exchange(topic)
            # One read of the binding table for the call: the check below and kombu's
            # routing of each message (on Redis, an SMEMBERS each) share it.
            with _table_read_once(self._channel) as tables:
                # (kombu would put them in its undeliverable queue, were it unbound)
                self._ensure_bound(topic, DEFAULT_GROUP, tables)
                for message in messages:
                    self._put(exchange, "", message)

        self._call(send)

    def _ensure_bound(self, topic: str, group: str, tables: _Tables | None = None) -> str:
        """:meth:`_ensure_queue`, and bound anew if the binding is gone: deleted since
        this channel declared it (another broker's ``delete``, an operator). ``tables``:
        the binding tables read for the call under way, forgotten when it binds."""
        queue = self._ensure_queue(topic, group)
        exchange = self.names.exchange(topic)
        if not self._routes_to(exchange, queue):
            self._bound.discard(queue)
            # (kombu's own record of it, which would make queue_bind do nothing)
            self._channel.state.binding_delete(queue, exchange, "")
            self._ensure_queue(topic, group)
            if tables is not None:
                tables.pop(exchange, None)
        return queue

    def _routes_to(self, exchange: str, queue: str) -> bool:
        """Whether ``exchange`` is still bound to ``queue``."""
        try:
            table = self._channel.get_table(exchange)
        except KeyError:  # kombu's memory store: the exchange is gone
            return False
        return any(binding[2] == queue for binding in table)

    def _put(self, exchange: str, routing_key: str, message: Message) -> None:
        body, properties, headers = encode(message)
        raw = self._channel.prepare_message(
            body,
            content_type=message.content_type,
            content_encoding="binary",
            headers=headers,
            properties=properties,
        )
        self._channel.basic_publish(raw, exchange=exchange, routing_key=routing_key)

    # -- consuming ----------------------------------------------------------------

    def _subscribe(self, subscription: Subscription) -> None:
        topic, group = subscription.topic, subscription.group

        # (subscribing again binds the queue anew if someone deleted it since)
        subscription.state = self._call(lambda: self._ensure_bound(topic, group), retry=True)
        with self._io:
            self._groups.setdefault(topic, {DEFAULT_GROUP}).add(group)

    def _fetch(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        queue: str = subscription.state
        deadline = time.monotonic() + timeout
        with self._kept_lock:
            kept = self._kept.get(subscription)
            if kept:
                return [kept.popleft() for _ in range(min(max_messages, len(kept)))]

        def take() -> list[Delivery]:
            taken: list[Delivery] = []
            while len(taken) < max_messages:
                raw = self._get(queue)
                if raw is None:
                    break
                if isinstance(raw, bytes):  # not kombu's message: its bytes, raw
                    message = decode(subscription.topic, raw, {}, {})
                else:
                    properties = {**raw.properties, "content_type": raw.content_type}
                    message = decode(subscription.topic, raw.body, properties, raw.headers)
                taken.append(Delivery(message, subscription=subscription))
            return taken

        while True:
            taken = self._call(take, retry=True)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0 or subscription.closed or self._closed:
                return taken
            self._stop.wait(min(remaining, _POLL))

    def _get(self, queue: str) -> Any:
        """The next message of ``queue`` (kombu's ``basic_get`` with ``no_ack``: it
        leaves the queue), or None. Decoding is total: on Redis, an element another
        program pushed that is not kombu's message (not JSON, or JSON of another shape)
        is returned as its bytes, where kombu would raise its decoder's error with the
        element popped, lost (``memory`` holds only what kombu put there)."""
        channel = self._channel
        if self.transport != "redis":
            return channel.basic_get(queue, no_ack=True)
        # kombu's own Channel._get, but the decoding, which is done here, total.
        with channel.conn_or_acquire() as client:
            for priority in channel.priority_steps:
                item = client.rpop(channel._q_for_pri(queue, priority))
                if item:
                    break
            else:
                return None
        try:
            payload = loads(bytes_to_str(item))  # type: ignore[no-untyped-call]
            return channel.Message(payload, channel=channel)
        except Exception:  # whatever kombu makes of what it did not write
            return bytes(item)

    def _unsubscribe(self, subscription: Subscription, unreturned: list[Delivery]) -> None:
        with self._kept_lock:
            kept = list(self._kept.pop(subscription, ()))
        # (what a cut-off receive fetched came before what the buffer holds)
        self._hand_back([*kept, *unreturned])

    def _hand_back(self, deliveries: list[Delivery]) -> None:
        """Deliveries the caller never got (a receive cut off by a timeout or a
        cancellation; a worker's that it never began): those of an open subscription
        are kept for its next fetch, first in line, so that ORDERED holds (each as a
        new delivery: the one handed back is settled). The others (a closing
        subscription's, or once the broker closes) go back on their group's queue,
        at its end: a virtual transport has no way to put a message back in front."""
        live = []
        with self._kept_lock:
            for delivery in deliveries:
                if delivery.settled:
                    continue
                subscription = delivery.subscription
                if subscription.closed or self._closed or self._stop.is_set():
                    live.append(delivery)
                    continue
                again = Delivery(
                    delivery.message, subscription=subscription, attempt=delivery.attempt
                )
                self._kept.setdefault(subscription, collections.deque()).append(again)
        # (not self._closed: a broker's close sets that before it closes its
        # subscriptions, whose hand-backs must still reach the transport)
        if live and not self._stop.is_set():

            def put_back() -> None:
                for delivery in live:
                    queue: str = delivery.subscription.state
                    self._put("", queue, delivery.message)

            self._call(put_back)
        self._mark(deliveries)

    # -- management ---------------------------------------------------------------

    def _inspect(self, topic: str) -> TopicInfo:
        with self._io:
            groups = sorted(self._groups.get(topic, {DEFAULT_GROUP}))

        exchange = self.names.exchange(topic)

        def look() -> dict[str, int]:
            # A look declares nothing: a queue that does not exist holds nothing (kombu's
            # memory store would make one to measure it), and is no group: one that
            # exists is bound to the topic's exchange, or holds a message (on Redis an
            # empty list is no key: the binding tells).
            channel = self._channel
            sizes = {}
            for group in groups:
                queue = self.names.queue(topic, group)
                if channel._has_queue(queue):
                    sizes[group] = int(channel._size(queue))
                elif self._routes_to(exchange, queue):
                    sizes[group] = 0
            return sizes

        sizes = self._call(look, retry=True)
        return TopicInfo(
            topic=topic,
            length=sizes.get(DEFAULT_GROUP, 0),
            groups=tuple(GroupInfo(g, 0, sizes[g]) for g in groups if g in sizes),
            details={
                "transport": self.transport,
                "exchange": exchange,
                "queues": {self.names.queue(topic, g): sizes[g] for g in groups if g in sizes},
            },
        )

    def _purge(self, topic: str) -> int:
        with self._io:
            groups = sorted(self._groups.get(topic, {DEFAULT_GROUP}))

        def purge() -> int:
            # Declares nothing, as inspect: a queue that does not exist holds nothing
            # (declared here, it would outlive the purge; kombu's memory store would
            # make one to purge it).
            removed = 0
            channel = self._channel
            for group in groups:
                queue = self.names.queue(topic, group)
                if channel._has_queue(queue):
                    removed += int(channel.queue_purge(queue) or 0)
            return removed

        return self._call(purge, retry=True)

    def _close(self) -> None:
        self._stop.set()
        with self._io:
            self._drop_channel()
            self._connection.release()


def _connection(url: BrokerURL, transport: str, connect_timeout: float) -> Any:
    """The kombu connection ``url`` names (nothing is sent yet)."""
    if transport == "memory":
        if url.host or url.port or url.username or url.password or url.path.strip("/"):
            raise InvalidURL(
                "kombu+memory:// takes no host, user or path (kombu keeps one in-memory "
                f"store per process), got {url}"
            )
        return KombuConnection(transport="memory")  # type: ignore[no-untyped-call]
    db = url.path.strip("/") or "0"
    if not db.isdigit():
        # a path holding a secret option ('/token=x', a '?' typed as '/') is masked
        shown = shown_path(db)
        hint = " (it holds what looks like a secret option: a '?' typed as '/'?)"
        raise InvalidURL(
            f"the path of {url.scheme}:// is a Redis database number, got {shown!r}"
            + (hint if shown != db else "")
        )
    return KombuConnection(  # type: ignore[no-untyped-call]
        hostname=url.host or "localhost",
        port=url.port or 6379,
        userid=url.username,
        password=url.password,
        virtual_host=db,
        transport="redis",
        connect_timeout=connect_timeout,
        transport_options={"socket_timeout": connect_timeout},
    )


#: The binding tables read during one publish call, by exchange.
_Tables = dict[str, Any]


@contextlib.contextmanager
def _table_read_once(channel: Any) -> Iterator[_Tables]:
    """While the block runs, ``channel.get_table`` reads each exchange's binding table
    once (kombu reads it again for every message it routes); what the block pops from
    the dict it yields is read afresh."""
    tables: _Tables = {}
    read = channel.get_table

    def get_table(exchange: str) -> Any:
        if exchange not in tables:
            tables[exchange] = read(exchange)
        return tables[exchange]

    channel.get_table = get_table
    try:
        yield tables
    finally:
        del channel.get_table
