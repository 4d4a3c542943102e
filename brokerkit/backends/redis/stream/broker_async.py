"""``redis+stream://``: Redis streams with consumer groups.

A topic is one stream, ``<prefix>:{<topic>}``; each message is one entry with two
fields, ``bk1`` (a header: id, content type, time, headers) and ``body``. A group
is a Redis consumer group; a subscription is one consumer in it.

* Publish: one ``XADD`` (``MAXLEN ~ N`` / ``MINID ~ T`` when bounded); for
  :meth:`~brokerkit.Broker.publish_many`, one script that adds the batch (all or
  none) and trims once.
* Receive: ``XREADGROUP ... COUNT prefetch [BLOCK]``, on a connection the
  subscription keeps for its reads (see :mod:`.._held_async`). A script that claims
  entries idle past the visibility timeout (``XAUTOCLAIM``) and reads the rest runs
  instead on a subscription's first fetch, after a read found nothing, after a
  nack, and otherwise every quarter visibility timeout. The group is created on
  first use. A blocking read waits on the group's wake stream
  (``<prefix>:{<topic>}:wake:<group>``) too, in the same ``XREADGROUP``: a requeue
  or a hand-back adds an entry to it, and the member it wakes claims at once what
  came back, as it would have read a new entry.
* Ack: one script per batch checks which entries are still pending for this
  consumer (one ``XPENDING`` over the batch's id range) and acks them with ``XACK``.
  One whole read batch, acked as read, is acked by its count instead (see
  :data:`~.ack_script.ACK`). A late ack never settles another consumer's delivery.
* Nack: one script per delivery, all pipelined; requeue makes the entry
  claimable at once, dead-lettering adds it to ``<topic>.dlq`` (to the topic's own
  stream at the last level: see ``dead_letter_topic``) and acks it.
* Leases: a background heartbeat resets the idle time of every held entry
  (``XCLAIM ... JUSTID``) so that a live consumer's entries are never reclaimed.
* Settlements (ack, nack, lease renewals, the reaper's dead-letters) run on a second
  client, with a connection pool of its own, whose commands redis-py never resends: a
  script whose reply was lost is sent again by brokerkit, flagged as a retry (see
  :mod:`.settle_async`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from brokerkit._acompat import Lock
from brokerkit._broker_async import AsyncBroker
from brokerkit._capabilities import Capability
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._logging import subscription_fields
from brokerkit._options import BrokerOptions
from brokerkit._subscription_async import AsyncSubscription
from brokerkit._topics import check_topic
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._client_async import Reconnector, make_client
from brokerkit.backends.redis._closing import CloseSignal, WakesOnClose
from brokerkit.backends.redis._connection import translate_errors
from brokerkit.backends.redis._durable_async import replica_wait
from brokerkit.backends.redis._heartbeat_async import LeaseKeeper
from brokerkit.backends.redis._held_async import AsyncHeldClient, AsyncPerCommand, AsyncReader
from brokerkit.backends.redis._loops import one_loop
from brokerkit.backends.redis._options import DRIVER_QUERY_KEYS, MAX_PAYLOAD_BYTES
from brokerkit.backends.redis._periodic_async import Periodic
from brokerkit.backends.redis._topic_scan_async import scan_topics
from brokerkit.backends.redis.stream.calls_async import StreamScripts
from brokerkit.backends.redis.stream.entries import unparsed
from brokerkit.backends.redis.stream.fetching_async import StreamFetching
from brokerkit.backends.redis.stream.info import StreamTopicInfo
from brokerkit.backends.redis.stream.inspect_async import inspect_stream
from brokerkit.backends.redis.stream.keys import StreamKeyspace
from brokerkit.backends.redis.stream.log import group_start
from brokerkit.backends.redis.stream.manage_async import StreamManagement, create_group
from brokerkit.backends.redis.stream.nacking_async import StreamNacking
from brokerkit.backends.redis.stream.options import RedisStreamOptions, StreamState
from brokerkit.backends.redis.stream.publish_async import StreamPublishing
from brokerkit.backends.redis.stream.purge_async import purge_stream
from brokerkit.backends.redis.stream.reaping_async import StreamReaping
from brokerkit.backends.redis.stream.scheduling import PARKING, held_by_stream
from brokerkit.backends.redis.stream.settle_async import StreamSettling
from brokerkit.backends.redis.stream.wrong_keys_async import wrong_key
from brokerkit.exceptions import IncompatibleTopic, InvalidOption

__all__ = ["AsyncRedisStreamBroker"]

log = logging.getLogger("brokerkit.redis")

_T = TypeVar("_T")


def _let_go(client: Any) -> None:
    """Let go of a client the constructor made and will not keep. A sync client may
    hold connections already (a cluster client asks a node for the slots as it is
    made): it is closed. An asyncio client opens none before its first command: there
    is nothing to close."""
    close = getattr(client, "close", None)
    if close is not None and not inspect.iscoroutinefunction(close):
        close()


@one_loop
class AsyncRedisStreamBroker(
    StreamSettling,
    StreamNacking,
    StreamReaping,
    StreamFetching,
    StreamManagement,
    StreamPublishing,
    WakesOnClose,
    AsyncBroker,
):
    """A broker on Redis streams: persistent, acked, competing consumers in groups,
    fan-out between groups, replay from any position, bounded by trimming."""

    schemes: ClassVar[tuple[str, ...]] = ("redis+stream", "rediss+stream")
    capabilities: ClassVar[Capability] = (
        Capability.PERSISTENT
        | Capability.ACK
        | Capability.COMPETING
        | Capability.FANOUT
        | Capability.REPLAY
        | Capability.DEAD_LETTER
        | Capability.ORDERED
        | Capability.BOUNDED
        | Capability.DELAY
    )
    Options: ClassVar[type[BrokerOptions]] = RedisStreamOptions
    #: redis-py's own query arguments pass to the driver.
    driver_query_keys: ClassVar[frozenset[str]] = DRIVER_QUERY_KEYS
    max_payload_bytes: ClassVar[int | None] = MAX_PAYLOAD_BYTES
    #: A lease is an entry's idle time, which the group's lease length bounds.
    extend_beyond_timeout: ClassVar[bool] = False
    options: RedisStreamOptions

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        self._client = make_client(url, self.options)
        # XREADGROUP's flat reply as it came (this client is the broker's own).
        self._client.set_response_callback("XREADGROUP", unparsed)
        self._scripts = StreamScripts(self._client)
        # Settlements go on a client of their own that never resends a script whose
        # reply was lost: their own retry tells the scripts it is one (see
        # StreamSettling._run_settling).
        try:
            self._settle_client = make_client(url, self.options, retries=0)
        except BaseException:
            _let_go(self._client)
            raise
        self._settle_durable = replica_wait(self._settle_client, url, self.options, retries=0)
        # Settlements and single publishes: each on a connection kept for them when it
        # is free; not where the URL caps the pool (see AsyncPerCommand).
        held: Any = self._settle_client
        if "max_connections" in url.query:
            held = AsyncPerCommand(held)
        self._settle_held = AsyncHeldClient(AsyncReader(held))
        # Publishes too: redis-py resending an XADD whose reply was lost stored the
        # message twice, and a WAIT resent alone on a new connection confirmed nothing
        # (Redis 7.2+); brokerkit's retry looks first, and writes before it waits.
        self._publish_client = self._settle_client
        self._durable = replica_wait(self._settle_client, url, self.options, retries=0)
        self._sender = AsyncReader(held)
        self._keys = StreamKeyspace(self.options.prefix, self.options.stream_key)
        self._body_field = self.options.body_field.encode()
        # Told as the close begins: what retries against a lost server gives up then.
        self._close_signal = CloseSignal()
        self._reconnector = Reconnector(
            url, self.options.reconnect_timeout, closing=self._close_signal
        )
        vt = self.options.visibility_timeout
        self._keeper = LeaseKeeper(
            self._renew_held,
            self.options.heartbeat_interval or vt / 3,
            name=f"brokerkit-stream-leases-{id(self):x}",
        )
        # Reclaiming runs on a subscription's first fetch, after a read found nothing
        # new (a read blocks at most this long), after a nack, and otherwise at most
        # this often: an expired lease is reclaimed within visibility_timeout * 1.25.
        self._claim_interval = vt / 4
        self._reaper = Periodic(
            self._reap_all,
            min(vt / 2, 5.0),
            name=f"brokerkit-stream-reaper-{id(self):x}",
            what="dead-letter expired poison entries",
        )
        self._lease_lock = Lock()

    # -- keys -----------------------------------------------------------------------

    def stream_key(self, topic: str) -> str:
        """The Redis key of ``topic``'s stream."""
        return self._keys.topic(check_topic(topic))

    def _lost_key(self, topic: str) -> str:
        return self._keys.topic(topic, "lost")

    # -- consuming ------------------------------------------------------------------

    async def _subscribe(self, subscription: AsyncSubscription) -> None:
        if subscription.consumer == PARKING:
            raise InvalidOption(
                f"the consumer name {PARKING!r} is reserved by redis+stream for the delayed "
                "retries of each group; choose another name"
            )
        start = group_start(subscription.start)
        topic = subscription.topic
        key = self._keys.topic(topic)
        lease_key = self._keys.topic(topic, "vt")
        state = StreamState(key, self._lost_key(topic), lease_key, start)
        state.scheduled_key = self._keys.topic(topic, "scheduled")
        state.delayed_key = self._keys.topic(topic, "delayed", subscription.group)
        state.wake_key = self._keys.topic(topic, "wake", subscription.group)
        state.reader = AsyncReader(self._client)
        subscription.state = state
        mine = int(self.options.visibility_timeout * 1000)

        async def join() -> None:
            # Not once the broker is closing: the subscribe ends with BrokerClosed
            # anyway, and a call through the client the close closed would open a
            # connection nobody closes.
            self._check_open()
            await create_group(self._client, key, subscription.group, start)
            await create_group(self._client, state.wake_key, subscription.group, "$")
            # Listed in XINFO CONSUMERS from now on, not only after its first read.
            await self._client.xgroup_createconsumer(key, subscription.group, subscription.consumer)
            state.lease_ms = int(
                await self._scripts.join(keys=[lease_key], args=[subscription.group, mine])
            )

        await self._consuming_call(join, subscription)
        if self.options.max_deliveries is not None and not self._closed:
            self._reaper.start()

    async def _consuming_call(
        self, operation: Callable[[], Awaitable[_T]], subscription: AsyncSubscription
    ) -> _T:
        """``operation`` (a subscription's join, claim or read), retried as every call
        is; a key of another type that is not the topic's stream but one of the keys
        the subscription uses is named, with how to fix it (see :meth:`_wrong_key`),
        instead of blaming the topic."""
        try:
            return await self._reconnector.call(operation, topic=subscription.topic)
        except IncompatibleTopic as exc:
            named = await self._wrong_key(subscription.topic, subscription.group)
            if named is None:
                raise
            raise named from exc

    async def _wrong_key(self, topic: str, group: str | None) -> IncompatibleTopic | None:
        """See :func:`.wrong_keys_async.wrong_key`."""
        return await wrong_key(
            self._client, self.url, self._keys, topic, group, self.dead_letter_topic(topic)
        )

    async def _unsubscribe(
        self, subscription: AsyncSubscription, unreturned: list[AsyncDelivery]
    ) -> None:
        state: StreamState = subscription.state
        if self._disconnected:
            # The broker's close has disconnected (a subscribe it overtook closes its
            # subscription after it): a command now would open a connection nobody
            # closes. What the subscription leased runs out on its own.
            await state.reader.close()
            return
        try:
            await super()._unsubscribe(subscription, unreturned)
        finally:
            await state.reader.close()  # its connection back to the pool
        try:
            with translate_errors(self.url, subscription.topic):
                if state.woken:  # wake entries read that no claim acked yet
                    woken, state.woken = state.woken, []
                    await self._client.xack(state.wake_key, subscription.group, *woken)
                # A consumer that holds nothing leaves its group, so that short-lived
                # subscriptions do not pile up in XINFO CONSUMERS.
                await self._scripts.remove_idle(
                    keys=[state.key, state.wake_key],
                    args=[subscription.group, 0, subscription.consumer],
                )
        except Exception as exc:  # the subscription is closed either way
            log.debug(
                "could not remove consumer %s: %s",
                subscription.consumer,
                exc,
                extra=subscription_fields(subscription),
            )

    # -- management -----------------------------------------------------------------

    async def _inspect(self, topic: str) -> StreamTopicInfo:
        try:
            with translate_errors(self.url, topic):
                return await inspect_stream(
                    self._client,
                    self._scripts,
                    topic,
                    key=self._keys.topic(topic),
                    dead_letter_key=self._keys.topic(self.dead_letter_topic(topic)),
                    lost_key=self._lost_key(topic),
                    scheduled_key=self._keys.topic(topic, "scheduled"),
                    delayed_key_of=lambda group: self._keys.topic(topic, "delayed", group),
                )
        except IncompatibleTopic as exc:  # a key beside the stream, say: named
            named = await self._wrong_key(topic, None)
            if named is None:
                raise
            raise named from exc

    async def inspect(self, topic: str) -> StreamTopicInfo:
        """A snapshot of ``topic`` from XINFO STREAM, GROUPS and CONSUMERS.

        :returns: a :class:`StreamTopicInfo` whose groups are
            :class:`StreamGroupInfo`, with the entries lost to trimming counted.
        """
        info = await super().inspect(topic)
        assert isinstance(info, StreamTopicInfo)
        return info

    async def _list_topics(self) -> list[str]:
        return await scan_topics(
            self._client,
            self.url,
            self.options.prefix,
            self.options.stream_key,
            "stream",
            signs=("scheduled",),  # delayed messages of a stream not made yet
            own_parts=("vt", "lost", "scheduled", "wake"),
            checks={"scheduled": held_by_stream},  # redis+list names its held set alike
        )

    async def _purge(self, topic: str) -> int:
        try:
            with translate_errors(self.url, topic):
                key, scheduled = self._keys.topic(topic), self._keys.topic(topic, "scheduled")
                return await purge_stream(self._scripts, key, scheduled, topic=topic)
        except IncompatibleTopic as exc:  # the scheduled set's key, say: named
            named = await self._wrong_key(topic, None)
            if named is None:
                raise
            raise named from exc

    async def _suspend_renewals(self) -> None:
        """Stop renewing leases while staying open, as a hung process would (for the
        contract suite's late-ack test)."""
        await self._keeper.stop()

    async def _close(self) -> None:
        await self._reaper.stop()
        await self._keeper.stop()
        for durable in (self._durable, self._settle_durable):
            if durable is not None:
                await durable.aclose()
        await self._settle_held.reader.close()
        await self._sender.close()
        await self._settle_client.aclose()
        await self._client.aclose()
