"""``redis+list://``: the reliable queue on Redis lists, with leases instead of guesses.

Producers LPUSH to the topic's list; a consumer's fetch script moves up to
``prefetch`` of them to a batch list of their own and records one lease for the batch,
judged by the server's clock (after a BLMOVE into its processing list when it had to
wait). A live consumer renews its leases in the background; a rescue step, run by every
live consumer and by ``brokerkit rescue``, hands back deliveries whose lease ran out and
what consumers whose heartbeat stopped held. See ``docs/backends/redis-list.md``.

Written once, on ``redis.asyncio``, in ``broker_async.py``; the sync ``broker.py``
is generated from it. The background lease renewal is an asyncio task on one side
and a thread on the other; :meth:`close` stops it either way.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from brokerkit._acompat import Lock, acquire, sleep
from brokerkit._broker_async import AsyncBroker
from brokerkit._capabilities import Capability
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._inspect import TopicInfo
from brokerkit._options import BrokerOptions
from brokerkit._subscription_async import AsyncSubscription
from brokerkit._topics import check_topic
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._client_async import Reconnector, make_client
from brokerkit.backends.redis._closing import CloseSignal, WakesOnClose
from brokerkit.backends.redis._durable_async import replica_wait
from brokerkit.backends.redis._heartbeat_async import LeaseKeeper
from brokerkit.backends.redis._held_async import AsyncHeldClient, AsyncReader
from brokerkit.backends.redis._loops import one_loop
from brokerkit.backends.redis._lua_async import AsyncLua
from brokerkit.backends.redis._options import DRIVER_QUERY_KEYS, MAX_PAYLOAD_BYTES
from brokerkit.backends.redis._topic_scan_async import scan_topics
from brokerkit.backends.redis.list import schedule, scripts, settle_scripts, upkeep
from brokerkit.backends.redis.list.calls_async import AsyncListCalls, lease_batch, read_batches
from brokerkit.backends.redis.list.consumer_async import ConsumerState
from brokerkit.backends.redis.list.keys import OWN_PARTS, ListKeys, list_keys
from brokerkit.backends.redis.list.moves_async import lease_moved
from brokerkit.backends.redis.list.options import RedisListOptions
from brokerkit.backends.redis.list.plan import (
    TopicPlan,
    as_text,
    batches_for,
    fetch_receipts,
    new_nonces,
)
from brokerkit.backends.redis.list.publish_async import ListPublishing
from brokerkit.backends.redis.list.refused import RefusedRescues
from brokerkit.backends.redis.list.replies import fetched_messages, topic_info
from brokerkit.backends.redis.list.settle_async import ListSettling
from brokerkit.backends.redis.list.upkeep_calls_async import (
    MAINTENANCE_CALLS,
    RESCUE_LIMIT,
    inspect_once,
    live_topics,
    rescue_once,
)
from brokerkit.backends.redis.list.woken_async import claim_woken, confirm_lease
from brokerkit.backends.redis.stream.scheduling import held_by_list
from brokerkit.exceptions import IncompatibleTopic

__all__ = ["AsyncRedisListBroker"]

log = logging.getLogger("brokerkit.redis")

_T = TypeVar("_T")

#: Redis reads a BLMOVE timeout of 0 as "forever": never ask for less than this.
_MIN_BLOCK = 0.01
#: Redis ends a blocking command whose timeout passed on its next clock tick (ten a
#: second by default), up to this much late.
_SERVER_TICK = 0.1


@one_loop
class AsyncRedisListBroker(ListSettling, ListPublishing, WakesOnClose, AsyncBroker):
    """A work queue on Redis lists: at-least-once, leased, crash-safe.

    Every consumer of a topic competes for its messages (groups all share the one
    queue). Besides the :class:`AsyncBroker` API it offers :meth:`rescue`.
    """

    schemes: ClassVar[tuple[str, ...]] = ("redis+list", "rediss+list")
    capabilities: ClassVar[Capability] = (
        Capability.PERSISTENT
        | Capability.ACK
        | Capability.COMPETING
        | Capability.DEAD_LETTER
        | Capability.ORDERED
        | Capability.BOUNDED
        | Capability.DELAY
    )
    Options: ClassVar[type[BrokerOptions]] = RedisListOptions
    driver_query_keys: ClassVar[frozenset[str]] = DRIVER_QUERY_KEYS
    max_payload_bytes: ClassVar[int | None] = MAX_PAYLOAD_BYTES
    options: RedisListOptions

    def __init__(self, url: BrokerURL, options: BrokerOptions) -> None:
        super().__init__(url, options)
        self._client = make_client(url, self.options, retries=0)
        self._scripts = {
            name: AsyncLua(self._client, getattr(module, name))
            for module, names in (
                (scripts, ("FETCH", "TRIM")),
                (settle_scripts, ("SETTLE", "EXTEND")),
                (upkeep, ("RESCUE", "INSPECT", "PURGE")),
                (schedule, ("HOLD", "RELEASE")),
            )
            for name in names
        }
        self._topics: dict[str, TopicPlan] = {}
        # retries=0: on a cluster, the wait's connections to the nodes run settlements,
        # which redis-py must not resend unmarked (see .settle_async: brokerkit does,
        # marked as a retry), and publishes, which it resends no more than elsewhere
        self._durable = replica_wait(self._client, url, self.options, retries=0)
        # Told as the close begins: what retries against a lost server gives up then.
        self._close_signal = CloseSignal()
        self._call = AsyncListCalls(
            self._client, url, self.options.reconnect_timeout, self._keys, self._close_signal
        )
        self._lease_ms = int(self.options.visibility_timeout * 1000)
        self._refused = RefusedRescues()
        self._keeper = LeaseKeeper(
            self._renew, self.options.renew_interval, name=f"brokerkit-leases {url}"
        )
        # Held by a renewal from its look at the held deliveries to its reply, and by
        # a settlement while it takes its deliveries out of the keeper: a renewal
        # never touches a receipt that a settlement has already released.
        self._lease_lock = Lock()
        # Settlements and single publishes: each on a connection kept for them when it
        # is free. Not where the URL caps the pool (max_connections): a kept connection
        # is one of the pool's, which inspect, purge and the rest would then find taken
        # (redis-py's pool at its cap fails a command at once); there each command
        # takes a connection of the pool's and gives it back.
        capped = "max_connections" in url.query
        self._settle_held = AsyncHeldClient(
            AsyncReader(_PerCommand(self._client) if capped else self._client)
        )
        self._sender = AsyncReader(_PerCommand(self._client) if capped else self._client)

    # -- plumbing -----------------------------------------------------------------

    def _topic(self, topic: str) -> TopicPlan:
        plan = self._topics.get(topic)
        if plan is None:
            keys = list_keys(self.options.prefix, topic, self.options.queue_key)
            plan = TopicPlan(keys, topic, self.options)
            if len(self._topics) < 1024:
                self._topics[topic] = plan
        return plan

    def _keys(self, topic: str) -> ListKeys:
        return self._topic(topic).keys

    def _script(self, name: str, plan: TopicPlan, *args: Any) -> Awaitable[Any]:
        """Run one of :mod:`.scripts` with the common arguments first."""
        return self._scripts[name](keys=plan.script_keys, args=[*plan.common, *args])

    # -- consuming ----------------------------------------------------------------

    async def _subscribe(self, subscription: AsyncSubscription) -> None:
        plan = self._topic(subscription.topic)
        await self._check_queue(subscription.topic, plan.keys.queue)
        reconnector = Reconnector(
            self.url, self.options.reconnect_timeout, closing=self._close_signal
        )
        reader = AsyncReader(self._client)
        subscription.state = ConsumerState(plan, reconnector, subscription.consumer, reader)

    async def _check_queue(self, topic: str, queue: str) -> None:
        """Refuse ``topic`` as it is subscribed to when its queue key holds another
        Redis type than a list (another program's key, a redis+stream topic's stream):
        one ``TYPE``, retried as every call is. Else every fetch would fail on it, and
        a worker would start and warn for ever instead of stopping with the error (a
        key whose type changes later is still the fetch's error). A queue that does
        not exist yet is an empty topic.

        :raises IncompatibleTopic: the queue key holds another type.
        """

        async def look() -> Any:
            # Not once the broker is closing: the subscribe ends with BrokerClosed
            # anyway, and a call through the client the close closed would open a
            # connection nobody closes.
            self._check_open()
            return await self._client.type(queue)

        found = as_text(await self._call(look, topic))
        if found not in ("none", "list"):
            raise self._call.wrong_key(topic, queue, found, "list")

    async def _fetch(
        self, subscription: AsyncSubscription, max_messages: int, timeout: float
    ) -> list[AsyncDelivery]:
        state: ConsumerState = subscription.state
        # One fetch of a consumer at a time: a woken fetch's lease call leases the tail
        # of the processing list, where another fetch's BLMOVE may move an element, and
        # a maintenance hands back what no lease covers. (Under asyncio, a receive
        # cancelled while it waited leaves its fetch running: the next one waits for it,
        # as long as its own timeout lets it.)
        if not await acquire(state.fetch_lock, timeout):
            return []
        try:
            return await self._fetch_alone(subscription, max_messages, timeout)
        finally:
            state.fetch_lock.release()

    async def _fetch_alone(
        self, subscription: AsyncSubscription, max_messages: int, timeout: float
    ) -> list[AsyncDelivery]:
        state: ConsumerState = subscription.state
        if state.pending is not None:  # the lease of the element the last wake-up handed out
            await confirm_lease(subscription, self._scripts["FETCH"], self._keeper)
        if state.early:  # what that wake-up's call leased behind it
            early, state.early = state.early, []
            return early
        now = time.monotonic()
        if state.reconcile or now >= state.next_maintenance:
            await self._maintain(subscription)
        elif now >= state.next_release:
            await self._release(subscription)
        heartbeat_due = now - state.heartbeat_at > self.options.heartbeat / 4
        if timeout <= 0 or not state.idle or heartbeat_due:
            fetched = await self._claim(subscription, max_messages, None)
            if fetched or timeout <= 0:
                return fetched
        # The queue is empty: block on the server until a message comes, until the
        # next lease runs out and wants rescuing, or until a held message may be due.
        # A wake-up for a held message's due time this consumer knows of is kept to
        # the millisecond: the server's block ends a tick before it, and the rest is
        # waited out here (a message that comes meanwhile waits for it). Any other
        # wake-up (delay_poll_interval, a lease group falling due, half a visibility
        # timeout) blocks on the server to the end, so that nothing that comes
        # meanwhile waits for the consumer.
        wake = min(state.next_maintenance, state.next_release)
        left = wake - time.monotonic()
        tick = _SERVER_TICK if state.due_at <= wake + _MIN_BLOCK else 0.0
        if tick and left <= timeout and left < tick + _MIN_BLOCK:
            await sleep(max(left, 0.0))
            # The next call releases what fell due and then looks at the queue before
            # it blocks again: messages may have come while this one slept.
            state.idle = False
            return []
        block = max(min(timeout, left - tick), _MIN_BLOCK)
        # The BLMOVE and the lease script in one round trip (see _claim).
        fetched = await self._claim(subscription, max_messages, block)
        return fetched

    async def _claim(
        self, subscription: AsyncSubscription, count: int, block: float | None
    ) -> list[AsyncDelivery]:
        """Lease up to ``count`` deliveries in one script call; with ``block``, first
        wait up to that many seconds in a ``BLMOVE`` for one: what it moves goes out
        before its lease is written (see .woken_async), or with ``raw=true``, on a
        cluster or after a BLMOVE's error reply, the BLMOVE and the script go in one
        round trip (see :data:`.scripts.FETCH`)."""
        state: ConsumerState = subscription.state
        consumer = subscription.consumer
        run = self._scripts["FETCH"]
        if block is not None and state.reader.pooled and not self.options.raw:
            woken = await claim_woken(
                subscription,
                count,
                block,
                fetch=run,
                keeper=self._keeper,
                lease_ms=self._lease_ms,
                raw_content_type=self.options.raw_content_type,
                call=functools.partial(self._consumer_call, subscription),
            )
            if woken is not None:
                return woken
        fetch_keys = state.fetch_keys
        wait = None if block is None else (state.keys.queue, state.processing, block)

        async def fetch() -> tuple[list[str], tuple[list[Any], list[list[bytes]] | None] | None]:
            # Every attempt takes fresh nonces: one whose reply was lost may have
            # leased elements under the receipts it named.
            if wait is None:
                moved = await lease_moved(subscription, count, self._lease_ms, run)
                if moved is not None:
                    return moved
            nonces = new_nonces(batches_for(count, state.element_size))
            batches = [state.keys.batch(nonce, consumer) for nonce in nonces]
            args = state.plan.fetch_args(
                consumer, count, self._lease_ms, nonces[0], state.element_size
            )
            if wait is not None or len(nonces) > 1:
                # "1": the script leases what the BLMOVE moved first
                args += ["0" if wait is None else "1", *nonces[1:]]
            leased = await lease_batch(
                self._client, state.reader, batches, [*fetch_keys, *batches], args, wait, run
            )
            return nonces, leased

        try:
            nonces, leased = await self._consumer_call(subscription, fetch)
        except BaseException:
            if block is not None:  # a BLMOVE may have moved an element nobody leased
                state.reconcile = True
            raise
        if leased is None:  # the script did not run: the heartbeat was not renewed
            state.idle = True
            return []
        state.heartbeat_at = time.monotonic()
        reply, read = leased
        if read is None:  # leased, but the read of the batches failed: read them again
            client: Any = self._client
            batches = [state.keys.batch(nonce, consumer) for nonce in nonces]
            read = await self._consumer_call(subscription, lambda: read_batches(client, batches))
        elements = read[0] if len(read) == 1 else [e for batch in read for e in batch]
        # the queue had no more (a fetch of big elements takes fewer: see FETCH)
        state.idle = len(elements) < count and not (len(reply) > 2 and reply[2])
        if not elements:
            return []
        state.element_size = sum(map(len, elements)) // len(elements)
        # The batches are leased already: every element must come out as a delivery
        # (one another program wrote in a shape nobody reads is a raw message), or
        # it would sit leased, unrenewed, unseen until its lease ran out.
        messages, again = fetched_messages(
            subscription.topic, elements, self.options.raw_content_type
        )
        state.fetched = fetched = fetch_receipts(nonces, read, consumer)
        receipts = fetched[0]
        deliveries = AsyncDelivery._first_attempts(messages, subscription, receipts)
        if len(reply) > 1 and reply[1] is not None:  # a raw element that came back
            again = {0: int(reply[1]) + 1}
        if again:  # the messages that came back
            for index, attempt in again.items():
                deliveries[index].attempt = attempt
        self._keeper.hold(deliveries)
        return deliveries

    async def _consumer_call(
        self, subscription: AsyncSubscription, operation: Callable[[], Awaitable[_T]]
    ) -> _T:
        state: ConsumerState = subscription.state
        try:
            return await self._call(operation, subscription.topic, state.reconnector)
        finally:
            if state.reconnector.reconnected:
                # A reply may have been lost: a moved element without a lease, or
                # receipts this client never learnt. Fresh receipts from now on, and
                # hand back whatever sits in the processing list without a lease.
                state.reconnector.reconnected = False
                state.reconcile = True

    async def _maintain(self, subscription: AsyncSubscription) -> None:
        """Rescue the topic's stuck deliveries and this consumer's orphans; schedule
        the next run for when the next lease runs out (at most half a timeout away).
        A rescue refused for a dead-letter key of another type (see RefusedRescues)
        leaves the expired leases leased: held messages are released, and the fetch
        goes on."""
        state: ConsumerState = subscription.state
        state.reconcile = False
        topic, consumer = subscription.topic, subscription.consumer
        try:
            # calls of a bounded size, before the next fetch: in order (a bounded many)
            for _ in range(MAINTENANCE_CALLS):
                moved, wait_ms, _, visited, released, held_ms = await self._consumer_call(
                    subscription, lambda: self._rescue(state.plan, consumer, state.reader)
                )
                if moved or released:
                    state.idle = False
                if visited < RESCUE_LIMIT:
                    break
        except IncompatibleTopic as exc:
            if not self._refused.refused(exc, topic, consumer, state.keys.dead_letters):
                raise
            state.next_maintenance = time.monotonic() + self.options.visibility_timeout / 2
            await self._release(subscription)
            return
        self._refused.cleared(topic, consumer)
        wait = self.options.visibility_timeout / 2
        if wait_ms >= 0:
            wait = min(wait, max(wait_ms / 1000 + 0.01, 0.05))
        now = time.monotonic()
        # Only a held message's due time is worth a wake-up to the millisecond (see
        # _fetch); a lease group is rescued well enough a server tick late.
        state.due_at = now + held_ms / 1000 + 0.001 if held_ms >= 0 else math.inf
        state.next_maintenance = now + wait
        state.next_release = min(now + min(wait, self.options.delay_poll_interval), state.due_at)

    async def _release(self, subscription: AsyncSubscription) -> None:
        """Move the held messages that are due to the queue; look again when the next
        one is due, or after ``delay_poll_interval`` for ones held meanwhile."""
        state: ConsumerState = subscription.state
        moved, wait_ms = await self._consumer_call(
            subscription, lambda: self._script("RELEASE", state.plan, RESCUE_LIMIT)
        )
        if moved:
            state.idle = False
        due = wait_ms / 1000 + 0.001 if wait_ms >= 0 else math.inf
        now = time.monotonic()
        state.next_release = now + min(self.options.delay_poll_interval, due)
        state.due_at = min(state.due_at, now + due) if state.due_at > now else now + due

    async def _unsubscribe(
        self, subscription: AsyncSubscription, unreturned: list[AsyncDelivery]
    ) -> None:
        state: ConsumerState = subscription.state
        if self._disconnected:
            # The broker's close has disconnected (a subscribe it overtook closes its
            # subscription after it): a command now would open a connection nobody
            # closes. What the subscription leased runs out on its own.
            self._refused.forget(subscription.topic, subscription.consumer)
            await state.reader.close()
            return
        try:
            try:
                await confirm_lease(subscription, self._scripts["FETCH"], self._keeper)
            except BaseException:  # cancelled: what the last wake-up leased runs out
                self._keeper.drop(state.early)
                state.early = []
                raise
            if state.early:  # leased by the last wake-up's call, never returned
                unreturned, state.early = [*unreturned, *state.early], []
            await super()._unsubscribe(subscription, unreturned)  # hands back the unreturned
            if state.reconcile and state.next_maintenance:  # it fetched, then lost a
                await self._maintain(subscription)  # reply: what it moved goes back
        finally:
            self._refused.forget(subscription.topic, subscription.consumer)
            await state.reader.close()  # its connection back to the pool
        # Returned-but-unsettled deliveries keep their leases (renewed while this
        # broker lives); the heartbeat entry goes, so nothing of it is left behind.
        zrem = self._client.zrem
        await self._call(
            lambda: zrem(state.keys.consumers, subscription.consumer),
            subscription.topic,
        )

    # -- management ---------------------------------------------------------------

    async def rescue(self, topic: str) -> int:
        """Hand back ``topic``'s stuck deliveries now: those whose lease ran out, and
        everything held by consumers whose heartbeat stopped. Attempts are counted;
        past ``max_deliveries`` a message is dead-lettered. Any number of rescuers
        may run at once: each stuck delivery is handed back exactly once.

        :returns: how many deliveries were handed back.
        """
        self._check_open()
        plan = self._topic(check_topic(topic))
        total = 0
        while True:
            moved, _, _, visited, *_ = await self._call(lambda: self._rescue(plan, "", None), topic)
            total += int(moved)
            if visited < RESCUE_LIMIT:
                return total

    async def _rescue(self, plan: TopicPlan, own: str, reader: AsyncReader | None) -> list[Any]:
        return await rescue_once(self._client, self._scripts["RESCUE"], plan, own, reader)

    async def _inspect(self, topic: str) -> TopicInfo:
        plan = self._topic(topic)
        run = self._scripts["INSPECT"]
        reply = await self._call(lambda: inspect_once(self._client, run, plan), topic)
        return topic_info(topic, plan.keys, self.options.heartbeat, reply)

    async def _list_topics(self) -> list[str]:
        signed_only: set[str] = set()
        found = await scan_topics(
            self._client,
            self.url,
            self.options.prefix,
            self.options.queue_key,
            "list",
            signs=("expiry", "scheduled", "consumers"),  # deliveries out; held ones; consumers
            own_parts=OWN_PARTS,
            checks={"scheduled": held_by_list},  # redis+stream names its held set alike
            signed_only=signed_only,
        )
        prefix, template = self.options.prefix, self.options.queue_key
        return await live_topics(
            self._client,
            self.url,
            found,
            lambda topic: list_keys(prefix, topic, template),
            signed_only,
        )

    async def _purge(self, topic: str) -> int:
        """Delete the topic's waiting and held messages (one script: a key of another
        type is refused before anything is deleted). Raw elements' counts go too: an
        identical one pushed later starts at 0."""
        keys = self._keys(topic)
        purge = self._scripts["PURGE"]
        purged = [keys.queue, keys.scheduled, keys.returned, keys.attempts]
        return int(await self._call(lambda: purge(keys=purged, args=[]), topic))

    async def _suspend_renewals(self) -> None:
        """Stop renewing leases while staying open, as a hung process would (for the
        contract suite's late-ack test)."""
        await self._keeper.stop()

    async def _close(self) -> None:
        """Stop the lease renewals (the task, or thread, ends before this returns)
        and disconnect."""
        await self._keeper.stop()
        if self._durable is not None:
            await self._durable.aclose()
        await self._settle_held.reader.close()
        await self._sender.close()
        await self._client.aclose()


class _PerCommand:
    """A client's ``execute_command`` alone: an :class:`AsyncReader` of it keeps no
    connection (as of a cluster client, each command takes one of the pool's)."""

    def __init__(self, client: Any) -> None:
        self.execute_command = client.execute_command
