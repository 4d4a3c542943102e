"""A woken redis+list consumer hands out the element it waited for before its lease is
written.

A consumer with nothing to fetch waits in ``BLMOVE`` (the queue to its processing
list). Sent in one go with the FETCH script that leases what it moved, as it was, the
consumer's wake-up waited for the script too: the server runs it right after the
``BLMOVE`` returns, from cold caches, and the replies come together. So the woken path
reads the ``BLMOVE``'s reply alone, sends the FETCH call (``"2"``: lease that element
as the first of its batch, and up to ``prefetch - 1`` more waiting behind it) with the
reads of what else it leases, without waiting for their replies, and hands the element
out at once, under the receipt the call names (``<nonce>0:<consumer>``: the client's
own nonce, known before the script runs). Between the two the element sits in the
consumer's processing list, kept by its heartbeat, as it did between the ``BLMOVE``
and the script before. What the call leased behind it becomes deliveries when its
replies are read, held for renewal at once and handed out by the consumer's next
fetch (or back at its close); if the element handed out is no longer there when the
call runs, it leases nothing.

The promise: nothing touches that lease before it is written. The call's reply is read
(:func:`confirm_lease`) before anything else that names the receipt (an ack, a nack, an
extension, the lease keeper's renewal: ``ListSettling._per_topic``), before the
consumer's next fetch (which may move another element to the tail of its processing
list, where a FETCH call that must run again after ``NOSCRIPT`` looks), and before it
closes. The call leases the tail of the processing list, so nothing else may move an
element there before it has run: a consumer fetches one at a time (its fetch lock: under
asyncio a receive cancelled while it waited leaves its fetch running, and the next fetch
waits for it), and each fetch first reads the reply the last one left. A raw element (no
brokerkit envelope) waits for the reply before it goes out: its count of deliveries is
in it. If the lease could not be written (an error reply, a lost connection, a cancelled
read), the delivery is out all the same: its ack reports it stale, as one whose lease
ran out, and the element goes back to the queue (the script puts back what it could not
lease; what stays in the processing list goes back at the consumer's next fetch, its
reconcile); an error that stays, such as a key of the wrong type, fails the next fetch.

For an element of ``MOVE_BYTES`` or more the call is a transaction of moves (see
FETCH, *Moves*): the script, ``LMOVE``s of what waits behind the element into its
batch, and the ``RENAMENX`` back; their replies are the elements it leased. Where the
server lost the script or refused the transaction, the call runs again without them.

With ``raw=true`` (every element raw) and for a consumer whose ``BLMOVE`` gets an error
reply (an ACL that denies it; its script may still lease what waits), the
``BLMOVE``, the FETCH script and the read of the batch go in one send (the calls
module's ``lease_batch``); on a cluster (no pipeline runs a script) they are a round
trip each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, RedisError, ResponseError

from brokerkit._delivery_async import AsyncDelivery
from brokerkit._logging import subscription_fields
from brokerkit.backends.redis._heartbeat_async import LeaseKeeper
from brokerkit.backends.redis._held_async import AsyncSent
from brokerkit.backends.redis._lua_async import AsyncLua
from brokerkit.backends.redis.list.calls_async import read_batches
from brokerkit.backends.redis.list.consumer_async import ConsumerState
from brokerkit.backends.redis.list.moves_async import moves_reply, moves_transaction
from brokerkit.backends.redis.list.plan import (
    MOVE_BYTES,
    batches_for,
    fetch_receipts,
    moves_for,
    new_nonces,
)
from brokerkit.backends.redis.list.replies import fetched_messages, raw_element

if TYPE_CHECKING:
    from brokerkit._subscription_async import AsyncSubscription

__all__ = ["PendingLease", "claim_woken", "confirm_lease"]

log = logging.getLogger("brokerkit.redis")


class PendingLease:
    """The FETCH call that leases the element a ``BLMOVE`` is about to move (and up to
    ``count - 1`` more that wait behind it), with the reads of what else it leases:
    made and packed before the ``BLMOVE`` is sent (a wake-up then only sends them);
    once sent, their replies are read by :func:`confirm_lease` (and the call runs again
    if the server did not know the script: ``NOSCRIPT``)."""

    __slots__ = (
        "args",
        "batches",
        "commands",
        "count",
        "head",
        "keys",
        "moves",
        "moving",
        "nonces",
        "packed",
        "raw_content_type",
        "reply",
        "sent",
    )

    def __init__(
        self,
        state: ConsumerState,
        consumer: str,
        count: int,
        lease_ms: int,
        fetch: AsyncLua,
        raw_content_type: str | None,
    ) -> None:
        self.nonces = new_nonces(batches_for(count, state.element_size))
        self.batches = [state.keys.batch(nonce, consumer) for nonce in self.nonces]
        self.keys = [*state.fetch_keys, *self.batches]
        #: the call's ARGV up to its mode
        self.head = state.plan.fetch_args(
            consumer, count, lease_ms, self.nonces[0], state.element_size
        )
        self.args = [*self.head, "2", *self.nonces[1:]]
        #: the fetch's size (prefetch): a reply with no more waiting leaves the
        #: consumer idle only when it had room for more
        self.count = count
        self.raw_content_type = raw_content_type
        # the first batch from its second element: the first is the one handed out
        reads = [("LRANGE", batch, 1 if j == 0 else 0, -1) for j, batch in enumerate(self.batches)]
        self.commands = [("EVALSHA", fetch.sha, len(self.keys), *self.keys, *self.args), *reads]
        self.packed = state.reader.pack(*self.commands)
        #: how many LMOVEs follow the call in its transaction (0: none, see by_moves),
        #: and the consumer's moving key
        self.moves = 0
        self.moving = state.keys.moving(consumer)
        self.sent: AsyncSent | None = None
        #: the call's reply once read (None: not read yet, or the lease failed)
        self.reply: list[Any] | None = None

    def by_moves(self, state: ConsumerState, fetch: AsyncLua, element_size: int) -> None:
        """Lease what waits behind the element handed out, of ``element_size`` bytes,
        by moves, in one batch (see FETCH, *Moves*): the call becomes a transaction.
        ``keys`` and ``args`` become the call's without them (``"2"``, one batch),
        which runs where the server lost the script or refused the transaction."""
        moves = moves_for(self.count, element_size) - 1
        if moves <= 0:
            return
        self.nonces, self.batches = self.nonces[:1], self.batches[:1]
        self.keys = [*state.fetch_keys, *self.batches]
        self.args = [*self.head, "2"]
        self.commands = moves_transaction(
            fetch,
            self.keys,
            [*self.head, "4", moves],
            moves,
            self.batches[0],
            self.moving,
            state.keys.queue,
        )
        self.packed = state.reader.pack(*self.commands)
        self.moves = moves


async def claim_woken(
    subscription: AsyncSubscription,
    count: int,
    block: float,
    *,
    fetch: AsyncLua,
    keeper: LeaseKeeper,
    lease_ms: int,
    raw_content_type: str | None,
    call: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]],
) -> list[AsyncDelivery] | None:
    """Wait up to ``block`` seconds in a ``BLMOVE`` and hand out what it moves, its
    lease call sent (a fetch of up to ``count``): the delivery, ``[]`` when nothing
    came, or None when the ``BLMOVE`` got an error reply (the caller runs the one-send
    fetch). ``call`` runs an operation with the consumer's retries (a new lease call
    an attempt)."""
    state: ConsumerState = subscription.state

    async def attempt() -> tuple[bytes | ResponseError | None, PendingLease]:
        consumer = subscription.consumer
        lease = PendingLease(state, consumer, count, lease_ms, fetch, raw_content_type)
        return await _wait_and_lease(state, lease, block, fetch), lease

    try:
        moved, lease = await call(attempt)
        if isinstance(moved, bytes):
            delivered = await _hand_out_woken(subscription, moved, lease, fetch, keeper)
            keeper.hold(delivered)
            return delivered
    except BaseException:
        state.reconcile = True  # a BLMOVE may have moved an element nobody leased
        raise
    return [] if moved is None else None


async def _wait_and_lease(
    state: ConsumerState, lease: PendingLease, block: float, fetch: AsyncLua
) -> bytes | ResponseError | None:
    """A ``BLMOVE`` of up to ``block`` seconds from the queue to the consumer's
    processing list, and when it moved an element, the ``lease`` call (by moves for an
    element of ``MOVE_BYTES`` or more), sent (the consumer's pending lease from then
    on): what it moved (None: nothing came; an error reply: the caller runs the
    one-send fetch instead). Each attempt takes a new
    ``lease`` (fresh nonces): a call whose send failed may have run, and what it leased
    then waits out a lease nobody holds, as after a lost reply."""
    try:
        moved: bytes | None = await state.reader.execute(
            "BLMOVE", state.keys.queue, state.processing, "RIGHT", "RIGHT", block
        )
    except ResponseError as exc:
        return exc
    if moved is not None:
        if len(moved) >= MOVE_BYTES and not state.moves_refused:
            lease.by_moves(state, fetch, len(moved))
        lease.sent = await state.reader.send(*lease.commands, packed=lease.packed)
        state.pending = lease
    return moved


async def _hand_out_woken(
    subscription: AsyncSubscription,
    element: bytes,
    lease: PendingLease,
    fetch: AsyncLua,
    keeper: LeaseKeeper,
) -> list[AsyncDelivery]:
    """The delivery of the ``element`` a ``BLMOVE`` moved, the first of the batch its
    ``lease`` call (sent by :func:`_wait_and_lease`) leases; the call's reply is left to
    :func:`confirm_lease`, but for a raw element's."""
    state: ConsumerState = subscription.state
    consumer = subscription.consumer
    nonce = lease.nonces[0]
    receipt = f"{nonce}0:{consumer}"
    state.fetched = ([receipt], [f"{nonce}:{consumer}", -1])
    state.element_size = len(element)
    # the script tells whether more wait: until its reply is read, the next fetch looks
    state.idle = False
    messages, again = fetched_messages(subscription.topic, [element], lease.raw_content_type)
    deliveries = AsyncDelivery._first_attempts(messages, subscription, [receipt])
    if again:  # it came back (wrapped with its count)
        deliveries[0].attempt = again[0]
    elif raw_element(element, messages[0]):
        await confirm_lease(subscription, fetch, keeper)  # or another caller read it
        reply = lease.reply
        if reply is not None and len(reply) > 1 and reply[1] is not None:
            deliveries[0].attempt = int(reply[1]) + 1
    return deliveries


async def confirm_lease(
    subscription: AsyncSubscription, fetch: AsyncLua, keeper: LeaseKeeper
) -> None:
    """Read the replies of the subscription's pending FETCH call, if any (waiting for
    another caller reading them); run the script again where the server did not know
    it. The script's reply is kept on the call (``reply``; None: the lease could not be
    written, and the element goes back at the consumer's next fetch). What it leased
    behind the element handed out becomes deliveries, held by the ``keeper`` and kept
    for the consumer's next fetch (``state.early``)."""
    state: ConsumerState = subscription.state
    async with state.confirm_lock:
        pending = state.pending
        if pending is None:  # none, or another caller read it meanwhile
            return
        try:
            assert pending.sent is not None  # pending once sent
            reply, reads = _replies(subscription, pending, await pending.sent.replies())
            if reply is None or isinstance(reply, NoScriptError):
                # Nothing moved to the processing list since: fetches run one at a
                # time, and the next reads this reply first. Run again, the script
                # finds the element still at its tail.
                reply = await fetch(keys=pending.keys, args=pending.args)
                reads = []  # read apart below
            if isinstance(reply, Exception):
                raise reply
        except (RedisError, OSError) as exc:
            state.pending = None
            state.reconcile = True  # the element goes back from the processing list
            log.warning(
                "could not lease the delivery a woken consumer handed out (%s); it "
                "goes back to its queue at the consumer's next fetch",
                exc,
                extra=subscription_fields(subscription),
            )
            return
        except BaseException:  # cancelled: whether the lease was written is not known
            state.pending = None
            state.reconcile = True
            raise
        try:
            if reply[0] > 1 and (not reads or any(isinstance(r, Exception) for r in reads)):
                reads = await _read_again(pending, fetch)
            _keep_the_rest(subscription, pending, reply, reads, keeper)
            pending.reply = list(reply)
        finally:
            # only now: a fetch that finds none pending finds what it leased in `early`
            state.pending = None


def _replies(
    subscription: AsyncSubscription, pending: PendingLease, replies: list[Any]
) -> tuple[Any, list[Any]]:
    """The pending call's reply (None: a transaction of moves that did not run, to run
    again without them) and the reads of what it leased behind the element handed out
    (none: read them apart)."""
    if not pending.moves:
        return replies[0], replies[1:]
    reply, moved = moves_reply(subscription, replies)
    if reply is None or isinstance(reply, Exception) or len(moved) != reply[0] - 1:
        return reply, []
    return reply, [moved]


async def _read_again(pending: PendingLease, fetch: AsyncLua) -> list[Any]:
    """The elements the call leased behind the one handed out, read apart (after
    ``NOSCRIPT``, or a read that failed); an error in their place if this fails too."""
    try:
        reads: list[Any] = await read_batches(fetch.client, pending.batches)
    except (RedisError, OSError) as exc:
        return [exc]
    reads[0] = reads[0][1:]
    return reads


def _keep_the_rest(
    subscription: AsyncSubscription,
    pending: PendingLease,
    reply: list[Any],
    reads: list[Any],
    keeper: LeaseKeeper,
) -> None:
    """What the call leased behind the element handed out, as deliveries for the
    consumer's next fetch; and what the reply tells of the queue."""
    state: ConsumerState = subscription.state
    state.heartbeat_at = time.monotonic()
    capped = len(reply) > 2 and reply[2]
    state.idle = reply[0] < pending.count and not capped
    if reply[0] <= 1:
        return
    if any(isinstance(read, Exception) for read in reads):
        # Leased, but not read, twice: they wait out their lease (as after a lost
        # reply), an attempt counted.
        log.warning(
            "could not read %d deliveries a woken consumer leased; they are handed out "
            "again when their lease runs out",
            reply[0] - 1,
            extra=subscription_fields(subscription),
        )
        return
    elements = [e for batch in reads for e in batch]
    consumer = subscription.consumer
    # the receipts of the whole fetch: the one handed out first, at index 0
    receipts, runs = fetch_receipts(pending.nonces, [[b"", *reads[0]], *reads[1:]], consumer)
    messages, again = fetched_messages(subscription.topic, elements, pending.raw_content_type)
    rest = AsyncDelivery._first_attempts(messages, subscription, receipts[1:])
    for index, attempt in (again or {}).items():
        rest[index].attempt = attempt
    state.fetched = (receipts, runs)
    state.element_size = (state.element_size + sum(map(len, elements))) // (len(elements) + 1)
    keeper.hold(rest)
    state.early.extend(rest)
