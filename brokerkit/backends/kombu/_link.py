"""One broker's kombu connection: a lock around every use of it, reconnection with
kombu's backoff, the publisher channel, and the exchanges and queues it declared.

py-amqp connections are not thread-safe, and a broker is shared between threads (its
subscriptions, the lease reaper, publishers), so every frame goes out under
:attr:`Link.lock`. A call that finds the connection gone reconnects (for up to
``reconnect_timeout`` seconds) and, where that is safe, runs again; every channel,
and so every delivery tag handed out before, belongs to the old connection and is
dead: :attr:`Link.generation` counts connections so that readers notice.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote

import amqp.exceptions  # type: ignore[import-untyped]
from kombu.connection import Connection as KombuConnection

from brokerkit._url import BrokerURL
from brokerkit.backends.kombu._names import Names
from brokerkit.backends.kombu._options import KombuOptions
from brokerkit.exceptions import BrokerError, ConnectionFailed, IncompatibleTopic

__all__ = ["Confirms", "Link", "kombu_connection"]

_T = TypeVar("_T")

#: The queue type of every queue brokerkit declares: quorum queues count deliveries
#: (``x-delivery-count``), which is how a delivery knows its attempt.
QUEUE_ARGUMENTS = {"x-queue-type": "quorum"}


def kombu_connection(url: BrokerURL, options: KombuOptions, name: str) -> Any:
    """A kombu connection (not yet connected) for a ``kombu+<transport>://`` URL."""
    transport = url.scheme.split("+", 1)[1]
    tls = transport.endswith("s") and transport in ("amqps", "pyamqps")
    if tls:
        transport = transport[:-1]
    vhost = unquote(url.path[1:]) if url.path.startswith("/") else unquote(url.path)
    return KombuConnection(  # type: ignore[no-untyped-call]
        hostname=url.host or "localhost",
        port=url.port,
        userid=url.username,
        password=url.password,
        virtual_host=vhost or "/",
        transport=transport,
        ssl=tls,
        connect_timeout=options.connect_timeout,
        heartbeat=0,
        transport_options={"client_properties": {"connection_name": name}},
    )


class Link:
    """The connection of one broker, with what hangs off it."""

    def __init__(self, url: BrokerURL, options: KombuOptions, name: str) -> None:
        self.url = url
        self.options = options
        self.names = Names(options.prefix)
        #: Held around every use of the connection or one of its channels.
        self.lock = threading.RLock()
        #: Counts connections: a channel from an older generation is dead.
        self.generation = 0
        self._connection = kombu_connection(url, options, name)
        self._publisher: Any = None
        #: The publisher channel's confirms.
        self.confirms = Confirms()
        self._declared: set[str] = set()
        #: Every exchange and queue this link declared, over all generations.
        self.created_exchanges: set[str] = set()
        self.created_queues: set[str] = set()
        self._errors = tuple(self._connection.connection_errors) + tuple(
            self._connection.recoverable_connection_errors
        )
        self.call(lambda: None)  # connect now, so that a bad URL fails in connect()

    # -- calls --------------------------------------------------------------------

    def call(
        self, action: Callable[[], _T], *, on_channel_error: Callable[[], None] | None = None
    ) -> _T:
        """Run ``action`` under the lock, connected. When the connection is lost it
        reconnects and runs ``action`` once more (every channel, and every delivery
        tag, of the old connection is dead by then: callers check :attr:`generation`).

        When RabbitMQ closes a channel instead (a refused declaration, a deleted
        queue), py-amqp reopens it in place, without its confirm mode or consumers:
        the publisher channel is dropped, ``on_channel_error`` runs (a reader drops
        its channel and leases), and the error is raised as brokerkit's.

        :raises ConnectionFailed: no connection within ``reconnect_timeout``.
        :raises IncompatibleTopic: RabbitMQ refused a declaration.
        """
        with self.lock:
            self._ensure_connected()
            try:
                return self._translate(action, on_channel_error)
            except _Lost:
                self._reconnect()
                return self._translate(action, on_channel_error)

    def _translate(
        self, action: Callable[[], _T], on_channel_error: Callable[[], None] | None
    ) -> _T:
        try:
            return action()
        except TimeoutError:
            raise
        except amqp.exceptions.ChannelError as exc:
            self.drop_publisher()
            self._declared.clear()
            if on_channel_error is not None:
                on_channel_error()
            raise self._channel_error(exc) from exc
        except self._errors as exc:
            raise _Lost() from exc

    def _channel_error(self, exc: Any) -> BrokerError:
        text = getattr(exc, "reply_text", "") or str(exc)
        if isinstance(exc, amqp.exceptions.PreconditionFailed):
            return IncompatibleTopic(
                f"RabbitMQ refused a declaration on {self._server()}: {text}; an exchange or "
                "queue of that name exists with other settings (brokerkit declares durable "
                "fanout exchanges and quorum queues): delete it or choose another prefix"
            )
        if isinstance(exc, amqp.exceptions.AccessRefused):
            return ConnectionFailed(f"RabbitMQ refused access on {self._server()}: {text}")
        if isinstance(exc, amqp.exceptions.NotFound):
            return IncompatibleTopic(
                f"RabbitMQ on {self._server()}: {text}; a queue or exchange was deleted while "
                "in use: subscribe again to declare it anew"
            )
        return BrokerError(f"RabbitMQ closed a channel on {self._server()}: {text}")

    def _ensure_connected(self) -> None:
        if self._connection.connected:
            return
        self._reconnect()

    def _reconnect(self) -> None:
        self._connection.collect()
        self._publisher = None
        self._declared.clear()
        try:
            self._connection.ensure_connection(
                max_retries=None,
                interval_start=0.05,
                interval_step=0.25,
                interval_max=2.0,
                timeout=self.options.reconnect_timeout or None,
            )
        except Exception as exc:  # kombu re-raises driver errors as its own types
            if isinstance(exc, BrokerError):
                raise
            raise ConnectionFailed(
                f"cannot connect to {self._server()} within "
                f"reconnect_timeout={self.options.reconnect_timeout}s: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        self.generation += 1

    def _server(self) -> str:
        return self.url.render()

    # -- channels -----------------------------------------------------------------

    def channel(self) -> Any:
        """A new channel of the current connection (call under the lock)."""
        return self._connection.channel()

    def publisher(self) -> Any:
        """The channel messages are published on, with publisher confirms on."""
        channel = self._publisher
        if channel is None or not channel.is_open:
            channel = self._connection.channel()
            channel.confirm_select()
            self.confirms = Confirms()
            channel.events["basic_ack"].add(self.confirms.acked)
            channel.events["basic_nack"].add(self.confirms.nacked)
            self._publisher = channel
        return channel

    def drop_publisher(self) -> None:
        """Close the publisher channel (a publish failed half way); the next publish
        opens a new one."""
        channel, self._publisher = self._publisher, None
        if channel is not None and channel.is_open:
            # A dead connection cannot close it: the next call reconnects.
            with contextlib.suppress(*self._errors):
                channel.close()

    def drain(self, timeout: float) -> None:
        """Read frames for up to ``timeout`` seconds, dispatching deliveries to the
        channels' consumer callbacks; returns early once something came.

        :raises TimeoutError: nothing came.
        """
        self._connection.drain_events(timeout=timeout)

    def close(self) -> None:
        """Close the connection; the server hands back every unsettled delivery."""
        with self.lock:
            try:
                self._connection.close()
            except Exception:  # closing a dead connection: nothing more to do
                self._connection.collect()

    # -- topology -----------------------------------------------------------------

    def ensure_topic(self, topic: str) -> None:
        """Declare ``topic``'s exchange and default queue, and its dead-letter topic's,
        so that a message waits for its first consumer (call under the lock).

        :raises InvalidTopic: a name it would declare is too long for AMQP (nothing
            was declared).
        """
        from brokerkit._broker import DEFAULT_GROUP

        dead = f"{topic}.dlq"
        declared, queue = self._declared, self.names.queue
        if queue(topic, DEFAULT_GROUP) in declared and queue(dead, DEFAULT_GROUP) in declared:
            return  # both declared (and checked) already: a publish's usual case
        self.check_names(topic)
        self.ensure_queue(topic, DEFAULT_GROUP)
        self.ensure_queue(dead, DEFAULT_GROUP)

    def check_names(self, topic: str, group: str | None = None) -> None:
        """Check every name that declaring ``topic`` (and ``group``'s queue of it)
        builds, before anything is declared: see :meth:`Names.check`.

        :raises InvalidTopic: one is longer than AMQP allows.
        """
        from brokerkit._broker import DEFAULT_GROUP

        dead = f"{topic}.dlq"
        wanted = [(topic, DEFAULT_GROUP), (dead, DEFAULT_GROUP)]
        if group is not None:
            wanted.append((topic, group))
        self.names.check(
            name
            for queue_topic, queue_group in wanted
            for name in self._names_of_queue(queue_topic, queue_group)
        )

    def _names_of_queue(self, topic: str, group: str) -> list[str]:
        """What :meth:`ensure_queue` declares: the queue, its topic's exchange and the
        dead-letter topic's (named as the queue's ``x-dead-letter-exchange``)."""
        return [
            self.names.queue(topic, group),
            self.names.exchange(topic),
            self.names.exchange(f"{topic}.dlq"),
        ]

    def ensure_queue(self, topic: str, group: str) -> str:
        """Declare ``group``'s queue, bound to ``topic``'s exchange; return its name.

        :raises InvalidTopic: a name it would declare is too long for AMQP (nothing
            was declared).
        """
        queue = self.names.queue(topic, group)
        if queue in self._declared:
            return queue
        self.names.check(self._names_of_queue(topic, group))
        channel = self.publisher()
        exchange = self._exchange(channel, topic)
        dead = self._exchange(channel, f"{topic}.dlq")
        arguments = {**QUEUE_ARGUMENTS, "x-dead-letter-exchange": dead}
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
        self.created_queues.add(queue)
        channel.queue_bind(queue, exchange)
        self._declared.add(queue)
        return queue

    def _exchange(self, channel: Any, topic: str) -> str:
        name = self.names.exchange(topic)
        if name not in self._declared:
            channel.exchange_declare(name, "fanout", durable=True, auto_delete=False)
            self.created_exchanges.add(name)
            self._declared.add(name)
        return name


class Confirms:
    """Publisher confirms of one channel, recorded as they arrive.

    They are recorded by listeners rather than awaited one by one, because py-amqp
    reads (and dispatches) pending frames whenever it publishes: a confirm can arrive
    before anyone waits for it.
    """

    def __init__(self) -> None:
        self._count = 0
        self._pending: set[int] = set()
        self._refused: set[int] = set()

    def published(self, count: int) -> range:
        """Note ``count`` publishes (RabbitMQ numbers them from 1 per channel); return
        their tags."""
        tags = range(self._count + 1, self._count + count + 1)
        self._count += count
        self._pending.update(tags)
        return tags

    def waiting(self, tags: range) -> bool:
        """Whether any of ``tags`` is not confirmed yet."""
        return any(tag in self._pending for tag in tags)

    def refused(self, tags: range) -> list[int]:
        """The ``tags`` RabbitMQ refused (``basic.nack``); forgets them."""
        refused = [tag for tag in tags if tag in self._refused]
        self._refused.difference_update(refused)
        return refused

    def acked(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple)

    def nacked(self, tag: int, multiple: bool) -> None:
        self._refused.update(self._settle(tag, multiple))

    def _settle(self, tag: int, multiple: bool) -> set[int]:
        done = {t for t in self._pending if t <= tag} if multiple else {tag} & self._pending
        self._pending -= done
        return done


class _Lost(Exception):
    """Internal: the connection went away during a call."""
