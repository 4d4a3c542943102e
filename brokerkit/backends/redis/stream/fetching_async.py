"""Taking deliveries on redis+stream: a subscription's fetch reclaims entries idle past
the visibility timeout and delayed retries that are due (one script: see
:data:`~.lease_scripts.FETCH`), and reads new entries (``XREADGROUP``, waiting on the
group's wake stream too); what it takes is leased."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from brokerkit._acompat import sleep
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._message import Message
from brokerkit._subscription_async import AsyncSubscription
from brokerkit.backends.redis._heartbeat_async import LeaseKeeper
from brokerkit.backends.redis._held_async import AsyncReader
from brokerkit.backends.redis.stream.calls_async import StreamScripts
from brokerkit.backends.redis.stream.deliveries_async import first_deliveries
from brokerkit.backends.redis.stream.entries import StreamReceipt, decode_entry
from brokerkit.backends.redis.stream.grouping import receipts_of
from brokerkit.backends.redis.stream.manage_async import create_group
from brokerkit.backends.redis.stream.options import RedisStreamOptions, StreamState
from brokerkit.backends.redis.stream.scheduling import PARKING
from brokerkit.backends.redis.stream.scripts import text

__all__ = ["StreamFetching"]

_T = TypeVar("_T")

#: Redis ends a blocking read whose timeout passed on its next clock tick (ten a
#: second by default), up to this much late.
_SERVER_TICK = 0.1


class StreamFetching:
    """The fetch of :class:`AsyncRedisStreamBroker`: reclaiming and reading."""

    options: RedisStreamOptions
    _client: aioredis.Redis
    _scripts: StreamScripts
    _keeper: LeaseKeeper
    #: At most this long between two looks for entries to reclaim.
    _claim_interval: float
    _body_field: bytes

    if TYPE_CHECKING:  # provided by AsyncRedisStreamBroker, StreamPublishing, StreamReaping

        async def _consuming_call(
            self, operation: Callable[[], Awaitable[_T]], subscription: AsyncSubscription
        ) -> _T: ...

        def _trimming(self) -> tuple[str, str, str]: ...

        async def _dead_letter_claimed(
            self, subscription: AsyncSubscription, entry_id: str, message: Message, deliveries: int
        ) -> None: ...

    async def _fetch(
        self, subscription: AsyncSubscription, max_messages: int, timeout: float
    ) -> list[AsyncDelivery]:
        state: StreamState = subscription.state
        now = time.monotonic()
        if now >= state.claim_at or now >= state.release_at:
            deliveries = await self._claim_now(subscription, max_messages, now)
            if deliveries or subscription.closed:
                return deliveries
            if not state.claim_at:
                # More may be waiting to be claimed (the claim stopped at its budget,
                # or what it claimed was dead-lettered): new entries are read without
                # waiting, and the next fetch claims again.
                timeout = 0.0
        deliveries = await self._read(subscription, max_messages, timeout)
        if state.woken:
            # An entry was handed back or requeued while this read waited: reclaim
            # it now, as a new entry would have been read.
            if not deliveries and not subscription.closed:
                return await self._claim_now(subscription, max_messages, time.monotonic())
            state.claim_at = 0.0
        elif not deliveries:
            # Nothing new: look for entries to reclaim on the next fetch.
            state.claim_at = 0.0
        self._keeper.hold(deliveries)
        return deliveries

    async def _claim_now(
        self, subscription: AsyncSubscription, max_messages: int, now: float
    ) -> list[AsyncDelivery]:
        """:meth:`_claim`, and when to claim next; the deliveries are leased."""
        state: StreamState = subscription.state
        state.claim_at = now + self._claim_interval
        deliveries, again = await self._claim(subscription, max_messages)
        if again:
            # One entry came back, alone, or the look for idle entries stopped short;
            # more may be waiting: look again at once.
            state.claim_at = 0.0
        self._keeper.hold(deliveries)
        return deliveries

    async def _claim(
        self, subscription: AsyncSubscription, max_messages: int
    ) -> tuple[list[AsyncDelivery], bool]:
        """Reclaim one entry idle past the visibility timeout (dead-lettering it past
        ``max_deliveries``), or a delayed retry that is due; and say whether to claim
        again at once (an entry was reclaimed, or the script stopped before it looked
        at every idle entry). New entries are left to :meth:`_read` (see
        :data:`~.lease_scripts.FETCH`).

        An entry that comes back is handed out alone, in a batch of its own: a
        poison message that kills its consumer each time never takes prefetched
        batch mates with it (see :data:`~.lease_scripts.FETCH`)."""
        state: StreamState = subscription.state
        group, consumer = subscription.group, subscription.consumer
        min_idle = int(self.options.visibility_timeout * 1000)

        woken = list(state.woken)

        async def claim() -> tuple[list[Any], int]:
            if state.rewind:  # entries were handed back: they come out first
                state.rewind = False
                state.cursor = "0-0"
            keys = [state.key, state.lost_key, state.lease_key, state.scheduled_key]
            keys += [state.delayed_key, state.wake_key]
            args: list[Any] = [group, consumer, min_idle, state.cursor, max_messages]
            args.append(state.start_id)
            args += [self.options.body_field, *self._trimming(), PARKING]
            args += [self.options.max_deliveries or 0, *woken]
            cursor, claimed, wait_ms = await self._scripts.fetch(keys=keys, args=args)
            state.cursor = text(cursor)
            return claimed, int(wait_ms)

        claimed, wait_ms = await self._consuming_call(claim, subscription)
        del state.woken[: len(woken)]  # acked by the claim (kept until it succeeded)
        # Look for held messages again when the next one is due, or after the poll
        # interval for ones held meanwhile by other processes.
        wait = self.options.delay_poll_interval
        state.release_due = wait_ms >= 0 and wait_ms / 1000 + 0.001 < wait
        if state.release_due:
            wait = wait_ms / 1000 + 0.001
        state.release_at = time.monotonic() + wait
        deliveries = []
        limit = self.options.max_deliveries
        for raw_id, raw_fields, count in claimed:
            entry_id = text(raw_id)
            # The count is checked before the entry is decoded: whatever its fields
            # hold, an entry delivered max_deliveries times is dead-lettered.
            if limit is not None and count > limit:
                message = self._decode(subscription.topic, raw_fields)
                await self._dead_letter_claimed(subscription, entry_id, message, count - 1)
                continue
            message = self._decode(subscription.topic, raw_fields)
            deliveries.append(self._delivery(subscription, entry_id, message, int(count)))
        return deliveries, bool(claimed) or state.cursor != "0-0"

    async def _read(
        self, subscription: AsyncSubscription, max_messages: int, timeout: float
    ) -> list[AsyncDelivery]:
        """New entries (``XREADGROUP ... >``), waiting up to ``timeout`` for the first."""
        state: StreamState = subscription.state
        args: list[Any] = ["XREADGROUP", "GROUP", subscription.group, subscription.consumer]
        args += ["COUNT", max_messages]
        # Block no longer than the claim interval: an idle consumer must look for
        # expired leases too, or one would come back only when its read timed out.
        # A held message known to be due is looked for to the millisecond: the
        # server's block ends up to a tick late, so it ends a tick before, and once a
        # read finds nothing the rest is waited out here. The next poll for messages
        # held by other processes may come a tick late.
        left = state.release_at - time.monotonic()
        early = _SERVER_TICK if state.release_due else 0.0
        block = min(timeout, self._claim_interval, left - early)
        if block > 0:
            args += ["BLOCK", max(1, int(block * 1000))]
        # The group's wake stream too: a hand-back or requeue adds to it (see
        # scripts.NACK), so that it ends this wait as a new entry would.
        args += ["STREAMS", state.key, state.wake_key, ">", ">"]
        reader: AsyncReader = state.reader

        async def read() -> Any:
            try:
                return await reader.execute(*args)
            except ResponseError as exc:
                # NOGROUP: the group (or the wake stream's) was deleted; UNBLOCKED: a
                # key this read waited on was (delete_group runs while members wait)
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                await create_group(self._client, state.key, subscription.group, state.start_id)
                await create_group(self._client, state.wake_key, subscription.group, "$")
                return None

        reply = await self._consuming_call(read, subscription)
        if not reply:
            if block <= 0 < timeout and left <= timeout:
                await sleep(max(state.release_at - time.monotonic(), 0.0))
            return []
        # RESP2: [[key, entries], ...]; RESP3: {key: entries, ...}.
        entries = None
        for stream, got in reply.items() if isinstance(reply, dict) else reply:
            if text(stream) == state.wake_key:
                state.woken += [text(entry_id) for entry_id, _ in got]
            else:
                entries = got
        if not entries:
            return []
        deliveries = first_deliveries(
            subscription,
            state.key,
            entries,
            self.options.raw_content_type,
            self._body_field,
        )
        if state.count_acks:
            # every entry after the group's position, in order: acked exactly as
            # read, this batch may be acked by its count (see ack_script.ACK). Their
            # receipts, not the deliveries: one the application lets go of unsettled
            # is not kept alive (nor its lease renewed) here.
            state.last_read = receipts_of(deliveries)
        return deliveries

    def _decode(self, topic: str, flat: Any) -> Message:
        return decode_entry(topic, flat, self.options.raw_content_type, self._body_field)

    def _delivery(
        self, subscription: AsyncSubscription, entry_id: str, message: Message, attempt: int
    ) -> AsyncDelivery:
        state: StreamState = subscription.state
        receipt = StreamReceipt(state.key, subscription.group, entry_id, subscription.consumer)
        return AsyncDelivery(message, subscription=subscription, attempt=attempt, receipt=receipt)
