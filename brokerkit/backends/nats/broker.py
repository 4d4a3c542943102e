"""The NATS JetStream backend: ``nats://host:4222``.

Written once, for asyncio (nats-py is asyncio-only): :class:`AsyncNatsBroker`. The
sync :class:`~brokerkit.backends.nats.sync.NatsBroker` runs it on a private event loop
(:func:`brokerkit.aio.bridged`). What maps to what is in ``docs/backends/nats.md``:

* a stream per ``prefix``, a subject per topic, a durable pull consumer per group;
* ``AckWait`` is the visibility timeout, ``+WPI`` (in progress) renews a lease, and a
  live broker renews the leases of what it holds in the background;
* ``-NAK`` requeues, ``max_deliveries`` and ``nack(requeue=False)`` republish to
  ``<topic>.dlq`` and then ``+TERM`` the original;
* a group whose consumer was deleted (or its stream) is made again by the next fetch,
  from the subscription's start, as ``subscribe`` made it
  (:mod:`~brokerkit.backends.nats._groups`).

JetStream does not tell a late ack from a timely one (it accepts both, and the late
one settles whoever holds the message now), so each broker keeps the lease of every
delivery it handed out, counted from *before* the pull that fetched it: an ack,
nack or extend after that lease ran out raises StaleDelivery without reaching the
server, and one held up (the connection lost, the server not answering) is never
sent, nor sent again, once the lease has run out: it raises StaleDelivery then
(:func:`~brokerkit.backends.nats._leases.last_send`).

This module is the broker: publishing and fetching over the parts beside it (the
connection in ``_client``, the stream and the groups' consumers in ``_groups``, pulls
in ``_reader``, the leases in ``_leases`` and their renewals in ``_renewals``, what is
known of the server's release in ``_server``, settling and dead-lettering in
``_settling``, handing back in ``_handing_back``, what goes on the wire in ``_wire``,
inspect, topics and purge in ``_manage``).

What a broker made on the server (its stream, if it made it, and the durable consumers
it made) is in :attr:`AsyncNatsBroker.declared`, and :meth:`AsyncNatsBroker.delete`
deletes it (``brokerkit bench`` and ``brokerkit demo`` do, as they end).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from typing import ClassVar

from nats.aio.msg import Msg

from brokerkit._capabilities import Capability
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._inspect import TopicInfo
from brokerkit._logging import delivery_fields, log_fields
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._subscription_async import AsyncSubscription
from brokerkit._url import BrokerURL
from brokerkit.backends.nats._client import (
    NatsClient,
    Request,
)
from brokerkit.backends.nats._groups import Groups, check_start
from brokerkit.backends.nats._handing_back import NatsHandingBack
from brokerkit.backends.nats._leases import (
    GroupFound,
    Lease,
    Leases,
    deliveries_of,
    leased_on_arrival,
)
from brokerkit.backends.nats._manage import (
    NatsDeclared,
    delete_made,
    inspect_topic,
    list_topics,
    purge_topic,
)
from brokerkit.backends.nats._options import NatsOptions
from brokerkit.backends.nats._reader import Reader
from brokerkit.backends.nats._renewals import renew_forever, report_lost
from brokerkit.backends.nats._server import redelivery_count_warning
from brokerkit.backends.nats._settling import NatsSettling, NoStream
from brokerkit.backends.nats._wire import (
    check_header_size,
    consumer_name,
    decode,
    encode_headers,
    subject_for,
    wire_size,
)
from brokerkit.exceptions import (
    BrokerError,
    InvalidMessage,
)

__all__ = ["AsyncNatsBroker", "NatsDeclared"]

log = logging.getLogger("brokerkit.nats")


class AsyncNatsBroker(NatsSettling, NatsHandingBack):
    """NATS JetStream through nats-py, native on asyncio.

    Connects on first use. Every topic of one ``prefix`` lives in one stream; every
    group is a durable pull consumer, kept on the server after the broker closes
    (as a Redis stream keeps its groups).
    """

    schemes: ClassVar[tuple[str, ...]] = ("nats",)
    capabilities: ClassVar[Capability] = (
        Capability.PERSISTENT
        | Capability.ACK
        | Capability.COMPETING
        | Capability.FANOUT
        | Capability.REPLAY
        | Capability.DEAD_LETTER
        | Capability.ORDERED
    )
    Options: ClassVar[type[BrokerOptions]] = NatsOptions
    #: ``+WPI`` restarts the consumer's ``AckWait``: a lease cannot outlast it.
    extend_beyond_timeout: ClassVar[bool] = False
    #: ... nor be shortened: ``+WPI`` renews for ``AckWait``, whatever the seconds.
    extend_shortens: ClassVar[bool] = False
    options: NatsOptions

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        self._client = NatsClient(
            url,
            connect_timeout=self.options.connect_timeout,
            reconnect_timeout=self.options.reconnect_timeout,
        )
        self._stream = self.options.prefix
        self._leases = Leases(self._client, self._stream)
        self._groups = Groups(
            self._client, self._stream, self.options.visibility_timeout, self._leases
        )
        self._renewer: asyncio.Task[None] | None = None
        #: The readers of the subscriptions open, whose ack wait the renewals keep up.
        self._readers: weakref.WeakSet[Reader] = weakref.WeakSet()
        self._renewals_suspended = False
        #: Reports the leases the renewals found lost (:func:`report_lost`): here, on
        #: the event loop; the sync broker has its reporter thread do so.
        self._report_lost: Callable[[Sequence[Lease]], None] = report_lost
        self._server_checked = False
        #: When the broker's close started handing back (monotonic): what it hands
        #: back, and the close itself, end CLOSE_WAIT seconds from then at most.
        self._closing_by: float | None = None

    # -- the stream ---------------------------------------------------------------

    async def _ensure_stream(self) -> None:
        await self._groups.ensure_stream()

    # -- publishing ---------------------------------------------------------------

    async def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        await self._ensure_stream()
        subject = subject_for(self._stream, topic)
        requests = [(subject, m.payload, encode_headers(m)) for m in messages]
        # The server's max_payload counts the body and the headers; nats-py would
        # close the connection on a larger one, and JetStream refuses a header block
        # over 64 KiB once sent: both are refused before anything is sent.
        limit = (await self._client.connection()).max_payload
        for (_, payload, headers), message in zip(requests, messages, strict=True):
            check_header_size(message.id, headers)
            size = wire_size(payload, headers)
            if size > limit:
                raise InvalidMessage(
                    f"message {message.id} is {size:,} bytes with its headers, more than "
                    f"this NATS server's max_payload ({limit:,} bytes); nothing was "
                    "published. Raise max_payload in the server's configuration, or store "
                    "large payloads elsewhere and publish a reference"
                )
        try:
            await self._store(requests, f"publish to {topic!r}")
        except NoStream:
            # Deleted since this broker made (or found) it: nothing was stored (nobody
            # took the messages); made again, as at the first publish, and sent again.
            await self._ensure_stream()
            await self._store(requests, f"publish to {topic!r}")

    async def _store(
        self,
        requests: Sequence[Request],
        what: str,
        until: Sequence[Callable[[], float]] | None = None,
    ) -> list[bool]:
        """Publish to the stream and check every PubAck; whether each was stored.
        Messages carry their id as ``Nats-Msg-Id``, so a retried publish is stored
        once. With ``until`` (see :meth:`NatsClient.settle_all`), one not confirmed
        in its time is given up (False): stored or not, nobody knows."""
        if until is None:
            replies: list[Msg | None] = list(await self._client.request_all(requests, what))
        else:
            replies = await self._client.settle_all(requests, what, until)
        for reply in replies:
            if reply is None:
                continue
            status = reply.headers.get("Status") if reply.headers else None
            if status == "503":
                self._groups.stream_ready = False
                raise NoStream(
                    f"could not {what}: no JetStream stream captures its subject "
                    f"(was the stream {self._stream!r} deleted?)"
                )
            answer = json.loads(reply.data or b"{}")
            if "error" in answer:
                raise BrokerError(
                    f"JetStream refused to {what}: {answer['error'].get('description')}"
                )
        return [reply is not None for reply in replies]

    # -- consuming ----------------------------------------------------------------

    async def _subscribe(self, subscription: AsyncSubscription) -> None:
        check_start(subscription.start)  # (before anything is made)
        await self._ensure_stream()
        if not self._server_checked:
            self._server_checked = True
            await self._warn_of_miscounting_server()
        topic, group = subscription.topic, subscription.group
        durable = consumer_name(topic, group)
        info, _ = await self._groups.ensure_group(subscription)
        reader = Reader(self._client, f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{durable}")
        await reader.open()
        reader.ack_wait = info["config"]["ack_wait"] / 1e9
        reader.created = info.get("created")
        subscription.state = reader
        self._readers.add(reader)

    async def _warn_of_miscounting_server(self) -> None:
        nc = await self._client.connection()
        warning = redelivery_count_warning(nc.connected_server_version)
        if warning:
            log.warning("NATS at %s: %s", self._client.server, warning, extra=log_fields())

    async def _fetch(
        self, subscription: AsyncSubscription, max_messages: int, timeout: float
    ) -> list[AsyncDelivery]:
        self._client.check_loop()  # (before anything binds to this loop)
        reader: Reader = subscription.state
        await self._hand_back_stragglers(reader)
        if reader.kept:
            # What a cut-off receive's fetch brought comes first, and nothing more is
            # leased meanwhile: the subscription holds its prefetch at most.
            kept = reader.kept[:max_messages]
            del reader.kept[:max_messages]
            for delivery in kept:
                delivery.receipt.kept_until = None  # (taken: renewed while it is held)
            now = time.monotonic()
            for delivery in reader.kept:  # (read: what is left is renewed an ack wait more)
                delivery.receipt.kept_until = now + delivery.receipt.ack_wait
            live, _ = self._leases.split(kept)  # (one whose lease was lost: let go)
            if live:
                return deliveries_of(kept, live)
        generation = self._client.generation  # (before the pull: the earlier, if two)
        pulled = await self._groups.pull(subscription, reader, max_messages, timeout)
        deliveries: list[AsyncDelivery] = []
        dead: list[tuple[AsyncDelivery, str, int]] = []
        waited: list[Lease] = []
        limit = self.options.max_deliveries
        for sent, msg, arrived in pulled:
            delivery = self._delivery(subscription, reader, sent, msg, generation)
            if arrived is not None:
                leased_on_arrival(delivery.receipt, arrived)
            if limit is not None and delivery.attempt > limit:
                # Its lease ran out on the last allowed delivery (see _nack for the rest).
                dead.append((delivery, "max_deliveries", delivery.attempt - 1))
                continue
            deliveries.append(delivery)
            if arrived is not None:
                waited.append(delivery.receipt)
        if dead:
            try:
                await self._dead_letter(dead)
            except BrokerError as exc:
                # A consume loop never stops on this: AckWait brings them back, to be
                # dead-lettered then.
                for delivery, _, _ in dead:
                    self._leases.discard(delivery.receipt)
                log.warning(
                    "could not dead-letter %d message(s): %s",
                    len(dead),
                    exc,
                    extra=delivery_fields(d for d, _, _ in dead),
                )
        if waited:
            # A waiting pull does not say when the server leased what it brought:
            # restart AckWait now, so that the lease is counted from a known time.
            try:
                lost = {id(lease) for lease in await self._renew(waited)}
                deliveries = [d for d in deliveries if id(d.receipt) not in lost]
            except BrokerError as exc:
                log.warning(
                    "could not renew %d fresh lease(s): %s",
                    len(waited),
                    exc,
                    extra=delivery_fields(deliveries),
                )
        if deliveries:
            self._start_renewing()
        return deliveries

    def _delivery(
        self,
        subscription: AsyncSubscription,
        reader: Reader,
        sent: float,
        msg: Msg,
        generation: int,
    ) -> AsyncDelivery:
        meta = msg.metadata
        message = decode(
            subscription.topic,
            msg.data,
            msg.headers,
            meta.sequence.stream,
            meta.timestamp.timestamp(),
        )
        lease = Lease(
            msg.reply or "",
            sent + reader.ack_wait,
            reader.ack_wait,
            meta.consumer,
            meta.sequence.stream,
            generation,
            stored=msg.headers,
            created=reader.created,
        )
        self._leases[lease.reply] = lease
        delivery = AsyncDelivery(
            message, subscription=subscription, attempt=meta.num_delivered, receipt=lease
        )
        lease._holder = weakref.ref(delivery)  # (held weakly: see Lease.holder)
        return delivery

    async def _unsubscribe(
        self, subscription: AsyncSubscription, unreturned: list[AsyncDelivery]
    ) -> None:
        reader: Reader = subscription.state
        kept, reader.kept = reader.kept, []  # (closed: nothing is kept from now on)
        try:
            await self._give_back([*kept, *unreturned])
        finally:
            await reader.close()
            await self._hand_back_stragglers(reader)

    # -- renewing in the background -----------------------------------------------

    def _start_renewing(self) -> None:
        if self._renewer is None and not self._renewals_suspended and not self.closed:
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew_forever(), name=f"brokerkit-nats-renewals-{self._stream}"
            )

    async def _renew_forever(self) -> None:
        await renew_forever(
            self._leases,
            self._renew,
            lambda: self.closed,
            self._ack_waits_found,
            self._report_lost,
        )

    def _ack_waits_found(self, found: dict[str, GroupFound]) -> None:
        """The ``AckWait`` of these groups' consumers, and when they were made, as the
        renewals found them: the readers of those groups count the leases of what
        they pull with them."""
        for reader in list(self._readers):
            group = found.get(reader.consumer)
            if group is not None:
                reader.ack_wait, reader.created = group.ack_wait, group.created

    async def _suspend_renewals(self) -> None:
        self._renewals_suspended = True
        await self._stop_renewing()

    async def _stop_renewing(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    # -- management ---------------------------------------------------------------

    # (none of them makes the stream: where it does not exist, neither does a topic)

    async def _inspect(self, topic: str) -> TopicInfo:
        return await inspect_topic(self._client, self._stream, topic, self.dead_letter_topic(topic))

    async def _list_topics(self) -> list[str]:
        return await list_topics(self._client, self._stream)

    async def _purge(self, topic: str) -> int:
        return await purge_topic(self._client, self._stream, topic)

    @property
    def declared(self) -> NatsDeclared:
        """The stream (if this broker made it) and the durable consumers this broker
        made: they outlive it (JetStream keeps them until someone deletes them)."""
        groups = self._groups
        return NatsDeclared(
            frozenset([self._stream] if groups.made_stream else []),
            frozenset((self._stream, name) for name in list(groups.made_consumers)),
        )

    async def delete(self, streams: frozenset[str], consumers: frozenset[tuple[str, str]]) -> None:
        """Delete these durable consumers, then these streams, named as :attr:`declared`
        names them: only what this broker made. A stream is deleted only once it holds
        no message and no consumer (another program may have taken to it meanwhile):
        else it is kept, and stays in :attr:`declared`. What is deleted leaves it.

        :raises InvalidOption: one this broker did not make (nothing was deleted).
        :raises BrokerError: JetStream refused one, or a stream was kept.
        :raises ConnectionFailed: the server could not be reached (what was deleted
            before stays in :attr:`declared`, and is found gone when deleted again).
        """
        wanted = NatsDeclared(streams, consumers)
        deleted, refused = await delete_made(self._client, self.declared, wanted)
        self._groups.made_consumers.difference_update(name for _, name in deleted.consumers)
        if deleted.streams:
            self._groups.made_stream = False
            self._groups.stream_ready = False  # (the next use makes it again)
        if refused:
            raise BrokerError("; ".join(refused))

    def _wake_waits(self) -> None:
        """The close begins: what waits for a lost connection gives up now
        (:meth:`NatsClient.interrupt`), as the close's end would make it."""
        self._client.interrupt()

    async def _close(self) -> None:
        owner = self._client.loop
        if owner is not None and owner is not asyncio.get_running_loop():
            # The connection (and the renewals) belong to the loop that first used
            # the broker: closed there while it runs; else (ended, or stopped) its
            # socket is dropped, and nats-py's client marked closed, so that nothing
            # of it reconnects should that loop run again.
            if owner.is_running():
                done = asyncio.run_coroutine_threadsafe(self._close_here(), owner)
                await asyncio.wrap_future(done)
                return
            self._renewer = None  # (its task is that loop's: it ends as that loop runs)
            self._leases.clear()
            self._leases.wake()  # (an idle one waits untimed: woken, it sees the close)
            self._client.drop()
            return
        await self._close_here()

    async def _close_here(self) -> None:
        try:
            await self._stop_renewing()
        finally:
            self._leases.clear()
            await self._client.close(by=self._closing_by)
