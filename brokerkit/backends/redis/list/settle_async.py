"""Settling redis+list deliveries: ack, nack (with a delay and a reason), extend, and the
background renewal of the leases a broker's consumers hold; each a script call per
topic, a batch of receipts at a time. A mixin of :class:`AsyncRedisListBroker`."""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from brokerkit._acompat import Lock, acquire
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._durable_async import AsyncReplicaWait
from brokerkit.backends.redis._heartbeat_async import LeaseKeeper
from brokerkit.backends.redis._held_async import AsyncHeldClient
from brokerkit.backends.redis._lua_async import AsyncLua
from brokerkit.backends.redis._unconfirmed import unconfirmed_settlement
from brokerkit.backends.redis.list.calls_async import AsyncListCalls
from brokerkit.backends.redis.list.consumer_async import ConsumerState
from brokerkit.backends.redis.list.plan import TopicPlan, batch_runs
from brokerkit.backends.redis.list.replies import stale_receipts
from brokerkit.backends.redis.list.woken_async import confirm_lease
from brokerkit.exceptions import StaleDelivery

if TYPE_CHECKING:
    from brokerkit._subscription_async import AsyncSubscription

__all__ = ["ListSettling", "run_on"]

#: A settle script call carries at most this many receipts; a bigger batch is several
#: calls, one after another, so that no call holds the server for long. Measured on a
#: private Redis 7.0 with 10,000 deliveries held: per receipt about 8 us of server time
#: to requeue, 1.3 us to ack; 250 keeps a call near 2 ms.
_RECEIPTS_PER_CALL = 250
#: An extend or renewal call carries at most this many: a batch's deliveries share one
#: deadline, which an extension by hand moves only when the call names every delivery
#: the batch still leases under it (else each named one gets a deadline of its own).
#: Measured with 10,000 held by prefetch-1000 fetches (private Redis 7.0, SLOWLOG): an
#: extension of all 10,000 by hand takes 0.56-0.77 ms a call of 1,000, named by batch
#: and index (see batch_runs; 1.3-1.8 ms when each receipt was read apart), and the
#: lease keeper's renewals, 250 receipts a call (RENEW_CHUNK), 0.44-0.46 ms (0.6-1.0).
#: Fewer a call would split such a batch.
_EXTENDS_PER_CALL = 1000
#: And whatever the script, a call names receipts of at most this many batches (runs
#: of receipts of one batch, as :func:`.batch_runs` reads them): a batch costs the
#: script its own reads and writes. Measured with 10,000 deliveries held in batches of
#: one (a prefetch-1 consumer's; private Redis 7.0, SLOWLOG): an extension of 1,000
#: such took 7-8.5 ms a call, an ack or a nack of 250 2.7-3.5 ms; 100 a call keeps
#: each near 1 ms, and a whole fetch (one batch, or a few) is still one call.
_BATCHES_PER_CALL = 100


class ListSettling:
    """The settling primitives of :class:`AsyncRedisListBroker` and the renewal of the
    leases its consumers hold."""

    url: BrokerURL
    _scripts: dict[str, AsyncLua]
    _call: AsyncListCalls
    _keeper: LeaseKeeper
    #: Set when settlements wait for replicas (the ``replicas`` option).
    _durable: AsyncReplicaWait | None
    #: Held by a renewal from its look at the held deliveries to its reply, and by a
    #: settlement while it takes its deliveries out of the keeper.
    _lease_lock: Lock
    #: A connection of the client's pool that settlements go on (see :meth:`_run_held`).
    _settle_held: AsyncHeldClient
    _lease_ms: int
    _topic: Callable[[str], TopicPlan]

    if TYPE_CHECKING:  # provided by AsyncBroker
        _lock: threading.Lock
        _subscriptions: weakref.WeakSet[AsyncSubscription]

        @staticmethod
        def _mark(deliveries: Iterable[AsyncDelivery]) -> None: ...

    async def _ack(self, deliveries: Sequence[AsyncDelivery]) -> None:
        await self._settle_script(deliveries, "ack")

    async def _nack(self, deliveries: Sequence[AsyncDelivery], requeue: bool) -> None:
        await self._settle_script(deliveries, "requeue" if requeue else "reject")

    async def _nack_with(
        self,
        deliveries: Sequence[AsyncDelivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        delay_ms = math.ceil(delay * 1000) if delay else 0
        mode = "requeue+" if requeue else "reject+"
        # Taken before the call: a wait for replicas must not make the look late (an
        # early one finds the retry not yet due, and is told when it is).
        due = time.monotonic() + delay_ms / 1000
        try:
            await self._settle_script(deliveries, mode, delay_ms, reason or "")
        finally:  # applied too when the replicas did not confirm it (ReplicationTimeout)
            if delay_ms:
                # This process's consumers of those topics look again when the retry is
                # due.
                topics = {d.subscription.topic for d in deliveries}
                with self._lock:
                    subscriptions = list(self._subscriptions)
                for subscription in subscriptions:
                    state = subscription.state
                    if subscription.topic in topics and isinstance(state, ConsumerState):
                        state.next_release = min(state.next_release, due)
                        state.due_at = min(state.due_at, due)

    async def _hand_back(self, deliveries: list[AsyncDelivery]) -> None:
        """Return deliveries that were fetched but never handed to the application (a
        closed subscription's buffer, a cancelled receive): next out of the queue, as
        they were. No attempt is counted and none is dead-lettered, since no handler saw
        them; those whose leases ran out are back already, counted as a rescuer counts."""
        if deliveries:
            deliveries = [*deliveries, *await self._take_early(deliveries)]
            with contextlib.suppress(StaleDelivery):
                await self._settle_script(deliveries, "return")
        self._mark(deliveries)

    async def _take_early(self, deliveries: list[AsyncDelivery]) -> list[AsyncDelivery]:
        """What the last wake-up of these deliveries' subscriptions leased behind the
        element it handed out (see .woken_async): never returned either, so it goes
        back with them (unless a fetch of theirs is under way, which returns it)."""
        taken: list[AsyncDelivery] = []
        for subscription in dict.fromkeys(d.subscription for d in deliveries):
            state = subscription.state
            if not isinstance(state, ConsumerState):
                continue
            if state.pending is not None:
                await confirm_lease(subscription, self._scripts["FETCH"], self._keeper)
            if state.early and await acquire(state.fetch_lock, 0):
                try:
                    taken += state.early
                    state.early = []
                finally:
                    state.fetch_lock.release()
        return taken

    async def _settle_script(
        self, deliveries: Sequence[AsyncDelivery], mode: str, *extra: Any
    ) -> None:
        async with self._lease_lock:
            self._keeper.drop(deliveries)
        short: dict[str, int] = {}
        try:
            stale = await self._per_topic(deliveries, "SETTLE", mode, *extra, short=short)
        except BaseException:
            # Failed, or cancelled whether or not the server applied it: what is not
            # settled may be settled again, and its lease is renewed until then (one
            # the server did settle is found gone by the next renewal). A hand-back's
            # are not: nobody will settle them, and their leases run out for a rescue.
            if mode != "return":
                self._keeper.hold(d for d in deliveries if not d.settled)
            raise
        if short:  # applied on the master: nothing left to renew
            durable = self._durable
            assert durable is not None
            raise unconfirmed_settlement(
                self.url,
                "ack" if mode == "ack" else "nack",
                deliveries,
                short,
                stale,
                replicas=durable.replicas,
                timeout=durable.timeout,
            )
        if stale:
            raise StaleDelivery(stale)

    async def _extend(self, deliveries: Sequence[AsyncDelivery], seconds: float) -> None:
        """Set the leases' deadlines to ``seconds`` from now; the background renewals
        never move them earlier (see :meth:`_renew`)."""
        stale = await self._per_topic(deliveries, "EXTEND", int(seconds * 1000), "set")
        if stale:
            self._keeper.drop(stale)
            raise StaleDelivery(stale)

    async def _renew(self, deliveries: list[AsyncDelivery]) -> list[AsyncDelivery]:
        """The lease keeper's beat: renew every held lease for a visibility timeout
        from now, or leave it alone if an extension by hand already runs longer;
        return those whose leases had run out."""
        async with self._lease_lock:
            # Settled since the keeper looked: their receipts are gone, not lost.
            held = {id(d) for d in self._keeper.held()}
            alive = [d for d in deliveries if id(d) in held]
            if not alive:
                return []
            return await self._per_topic(alive, "EXTEND", self._lease_ms, "renew")

    async def _per_topic(
        self,
        deliveries: Sequence[AsyncDelivery],
        script: str,
        *first: Any,
        short: dict[str, int] | None = None,
    ) -> list[AsyncDelivery]:
        """Run ``script`` once per topic over the deliveries' receipts (one call for
        the usual batch of one topic, one per :data:`_RECEIPTS_PER_CALL` (extends:
        :data:`_EXTENDS_PER_CALL`) receipts of a
        bigger one); return the deliveries whose receipts came back stale.

        A settlement (``short`` given) waits for replicas with the ``replicas`` option;
        every topic's calls are made whatever the others' waits found, and ``short``
        gets each topic whose replicas fell short, with how many confirmed (the
        fewest): the caller raises once its settlement is done."""
        by_topic: dict[str, list[AsyncDelivery]] = {}
        for delivery in deliveries:
            topic = delivery.subscription.topic
            group = by_topic.get(topic)
            if group is None:
                by_topic[topic] = group = []
            group.append(delivery)
        run = self._scripts[script]
        # a settlement waits for replicas (the replicas option); a renewal does not
        durable = self._durable if short is not None else None
        # A requeue (or a return) puts each element back at the head of the queue, the
        # last first: the chunks go in reverse too, so that the first is still next out.
        backwards = script == "SETTLE" and str(first[0]).startswith(("requeue", "return"))
        # an ack and an extension name their receipts by batch (see batch_runs)
        by_batch = script == "EXTEND" or first[0] == "ack"
        stale: list[AsyncDelivery] = []
        for topic, group in by_topic.items():
            plan = self._topic(topic)
            step = _EXTENDS_PER_CALL if script == "EXTEND" else _RECEIPTS_PER_CALL
            calls = call_cuts([d.receipt for d in group], step, _BATCHES_PER_CALL)
            for start, end in reversed(calls) if backwards else calls:
                chunk = group[start:end]
                receipts = [d.receipt for d in chunk]
                # a receipt names its subscription's consumer and its fetch's batch (see
                # _claim): each subscription and each batch is looked at once
                subscriptions = dict.fromkeys([d.subscription for d in chunk])
                for subscription in subscriptions:
                    if subscription.state.pending is not None:  # a lease being written
                        await confirm_lease(subscription, self._scripts["FETCH"], self._keeper)
                batches: Iterable[str]
                runs = by_batch and _whole_fetch(receipts, subscriptions)
                if runs:
                    # the usual ack, extension or renewal: the whole of a fetch, in order
                    batches = [str(name) for name in runs[::2]]
                    args = [*plan.common, *first, *runs]
                else:
                    batches = {r[: r.find("-") + 1]: r for r in receipts}.values()
                    named = batch_runs(receipts) if by_batch else receipts
                    args = [*plan.common, *first, *named]
                keys = plan.keys_for([s.consumer for s in subscriptions], batches)
                # a settlement sent again after a lost reply says so (see SETTLE)
                send = functools.partial(
                    self._send,
                    run,
                    keys,
                    args,
                    len(plan.common) if script == "SETTLE" else None,
                    durable,
                    itertools.count(),
                )
                reply, confirmed = await self._call(send, topic)
                if durable is not None and confirmed < durable.replicas and short is not None:
                    short[topic] = min(confirmed, short.get(topic, confirmed))
                lost = stale_receipts(reply)
                if lost:
                    stale.extend(d for d in chunk if d.receipt in lost)
        return stale

    async def _send(
        self,
        script: AsyncLua,
        keys: list[str],
        args: list[Any],
        mode_at: int | None,
        durable: AsyncReplicaWait | None,
        sends: itertools.count[int],
    ) -> tuple[Any, int]:
        """One call of ``script`` (with ``durable``, waiting for replicas) and how many
        replicas confirmed it (0 without). Sent again after a lost reply, a settlement
        says it is a retry (its mode at ``args[mode_at]`` marked ``!``): the attempt
        before may have been applied, and what it settled is not stale."""
        if mode_at is not None and next(sends):
            args = [*args]
            args[mode_at] = f"{args[mode_at]}!"
        if durable is None:
            return await self._run_held(script, keys, args), 0
        return await durable.run_counted(keys[0], functools.partial(run_on, script, keys, args))

    async def _run_held(self, script: AsyncLua, keys: list[str], args: list[Any]) -> Any:
        """``script`` on the settling connection the broker keeps (see
        :mod:`.._held_async`: a call that finds another one on it goes on a connection
        of the pool's, packed and read as there), or through the client for a
        cluster's."""
        held: Any = self._settle_held
        if held.reader.pooled:
            return await script(keys=keys, args=args, client=held)
        return await script(keys=keys, args=args)


def _whole_fetch(
    receipts: list[str], subscriptions: dict[AsyncSubscription, None]
) -> list[str | int] | None:
    """When ``receipts`` are those of their subscription's last fetch, all and in
    order (compared as the same strings, at no cost per receipt worth counting), its
    batches as the scripts read a whole fetch: each one's name and minus its size."""
    if len(subscriptions) != 1:
        return None
    state = next(iter(subscriptions)).state
    if not isinstance(state, ConsumerState):
        return None
    fetched, runs = state.fetched
    return runs if receipts == fetched else None


def call_cuts(receipts: Sequence[str], most: int, batches: int) -> list[tuple[int, int]]:
    """Where ``receipts`` are cut into script calls, as (start, end) pairs in order:
    each call at most ``most`` receipts and at most ``batches`` runs of receipts of one
    batch (``<nonce>`` and ``:<consumer>`` alike: see :func:`.batch_runs`)."""
    if len(receipts) <= min(most, batches):  # the usual fetch's settlement
        return [(0, len(receipts))]
    cuts: list[tuple[int, int]] = []
    start, runs, prefix, suffix = 0, 0, "", ""
    for index, receipt in enumerate(receipts):
        if index - start == most:  # (the rest of a batch cut here is a run of the next)
            cuts.append((start, index))
            start, runs, prefix = index, 0, ""
        # (a receipt without a nonce, an earlier version's, is a run of its own)
        if not (prefix and receipt.startswith(prefix) and receipt.endswith(suffix)):
            colon = receipt.find(":")
            prefix, suffix = receipt[: receipt.find("-", 0, colon) + 1], receipt[colon:]
            runs += 1
            if runs > batches:
                cuts.append((start, index))
                start, runs = index, 1
    cuts.append((start, len(receipts)))
    return cuts


async def run_on(script: AsyncLua, keys: list[str], args: list[Any], client: Any) -> Any:
    """``script`` on ``client`` (a connection pinned for a replica wait)."""
    return await script(keys=keys, args=args, client=client)
