"""Settling stream deliveries (ack, extend; the scripts a nack sends, see
:mod:`.nacking_async`, run here too) and renewing their leases.

An ack must never remove another consumer's delivery of the entry: once a lease
ran out and another member claimed the entry, the late ack is stale. The ack
script checks that on the server, where no delay can make the answer out of date
(``XPENDING`` of this consumer per batch, then ``XACK`` of what it still holds; one
whole read batch is acked by its count, see ``ack_script.ACK``).
A plain ``XACK`` decided on by the client while its lease looks long enough was
tried and dropped: a settlement held up behind a reconnect, a retry inside
redis-py, or a failover to a replica that had not seen the delivery can all bring
it to the server after another member claimed the entry.

Settling scripts run on a client of their own (``retries=0``): redis-py never resends
one. When a connection is lost during a settlement, brokerkit sends it again (through
connection loss, for up to ``reconnect_timeout``), telling the scripts that it is a
retry, since the lost attempt may have been applied before its reply was lost. The
promise after such a retry: an entry this consumer settled is never reported stale
(an ack applied by the lost attempt succeeds); an entry another member holds now is
reported stale by an ack or a dead-letter, as always; an entry pending for nobody is
taken as settled by the lost attempt (it may instead have been claimed and settled by
another member after this lease ran out: either way it is settled, and no member gets
it again). A requeue, return or delay of an entry another member holds now is not
reported stale after a retry: the lost attempt's requeue hands the entry to the next
member that fetches, which the server cannot tell from a claim made after this lease
ran out (so a delay may then not hold: the entry is with that member already). redis-py's
own resend (``retries=3``, as the other clients of the broker have) would send the
script unflagged and report an ack it had applied as stale.

With the ``replicas`` option, each stream's scripts wait for replicas on the
connection that ran them, one stream after another (up to ``replica_timeout`` each).
A retried script always writes (see :meth:`StreamSettling._run_settling`), so that the
wait on its new connection covers what the lost attempt wrote.
Every stream's scripts are sent whatever the wait found for another's; then one
:class:`~brokerkit.ReplicationTimeout` names the topics whose settlement the replicas
did not confirm in time (applied on the master all the same).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from brokerkit._acompat import Lock
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._client_async import Reconnector
from brokerkit.backends.redis._durable_async import AsyncReplicaWait, mark_retry
from brokerkit.backends.redis._heartbeat_async import LeaseKeeper
from brokerkit.backends.redis._held_async import AsyncHeldClient
from brokerkit.backends.redis._keys import hash_tagged
from brokerkit.backends.redis._unconfirmed import unconfirmed_settlement
from brokerkit.backends.redis.stream.calls_async import Call, StreamScripts, run_scripts
from brokerkit.backends.redis.stream.entries import id_order
from brokerkit.backends.redis.stream.grouping import (
    by_member,
    by_member_of,
    entry_chunks,
    read_as_one,
    stale_in,
)
from brokerkit.backends.redis.stream.keys import StreamKeyspace
from brokerkit.backends.redis.stream.options import (
    RedisStreamOptions,
    StreamState,
)
from brokerkit.exceptions import IncompatibleTopic, ReplicationTimeout, StaleDelivery

__all__ = ["StreamSettling"]


def scheduled_of(key: str) -> str:
    """The ``scheduled`` ZSET of the topic whose stream key is ``key``, as
    :meth:`StreamKeyspace.topic` names it (``topic(t, "scheduled")``): the stream's
    hash tag (itself when it holds one already, else ``{key}``) and ``:scheduled``,
    in the stream's slot."""
    return hash_tagged(key) + ":scheduled"


async def _run_marked(connection: Any, calls: Sequence[Call], key: str) -> list[Any]:
    """:func:`run_scripts` on ``connection``, the one that then ``WAIT``\\ s: more than
    one call go in a redis-py pipeline, on a connection of the pool, so ``connection``
    writes after them (:func:`mark_retry` on the stream's ``scheduled`` ZSET) and its
    ``WAIT`` covers them (Redis 7.2+ notes a connection's replication offset only at
    a command that wrote)."""
    replies = await run_scripts(connection, calls)
    if len(calls) > 1:
        await mark_retry(connection, scheduled_of(key))
    return replies


#: Entries per script, so that no settlement holds the server for long whatever the
#: batch (about 3 and 4 us of server time per entry: the renewal of 10,000 held took
#: 0.7-0.9 ms a call at the worst, where one XPENDING and one XCLAIM an entry took
#: 1.2-2.8; ``python -m benchmarks.issue18 --part bookkeeping``): the ack script, the
#: renewal script.
ACK_CHUNK = 500
RENEW_CHUNK = 200

#: The fewest deliveries acked by their count as one whole read batch (see
#: :data:`.ack_script.ACK`): its proof of ownership (three short XPENDINGs) costs the
#: server about what listing ten entries of a range does (measured on Redis 7.0:
#: ~0.4 us an entry), and a proof that fails costs a second call, so smaller acks
#: send their ids.
WHOLE_BATCH = 16


log = logging.getLogger("brokerkit.redis")


class StreamSettling:
    """The settling primitives of :class:`AsyncRedisStreamBroker` and the renewal of
    the leases its consumers hold."""

    options: RedisStreamOptions
    url: BrokerURL
    #: The client settlements run on: redis-py resends none of its commands.
    _settle_client: aioredis.Redis
    _scripts: StreamScripts
    _keys: StreamKeyspace
    _reconnector: Reconnector
    _keeper: LeaseKeeper
    #: Set when settlements wait for replicas (the ``replicas`` option); on
    #: :attr:`_settle_client`.
    _settle_durable: AsyncReplicaWait | None
    #: Held while renewing, and while a nack takes its deliveries out of the
    #: keeper, so that no renewal lands after a requeue and undoes it.
    _lease_lock: Lock
    #: A connection of the settling client's pool that settlements go on (see
    #: :meth:`_settle_scripts`).
    _settle_held: AsyncHeldClient

    if TYPE_CHECKING:  # provided by AsyncBroker

        def dead_letter_topic(self, topic: str) -> str: ...

        async def _wrong_key(self, topic: str, group: str | None) -> IncompatibleTopic | None: ...

        @staticmethod
        def _mark(deliveries: Iterable[AsyncDelivery]) -> None: ...

    async def _ack(self, deliveries: Sequence[AsyncDelivery]) -> None:
        flag = "10" if self.options.delete_acked else "00"
        calls: list[Call] = []
        parts: list[list[AsyncDelivery]] = []
        # Per call sent with a count instead of the ids, its keys, member and
        # deliveries, for the ids' call should the script not prove the batch held.
        by_count: dict[int, tuple[list[str], str, str, list[AsyncDelivery]]] = {}
        members, as_read = by_member(deliveries)
        for (key, group, consumer), ds in members.items():
            state: StreamState = ds[0].subscription.state
            # the group's delayed ZSET: written by a retry only (see ack_script.ACK)
            keys = [key, state.delayed_key]
            if (
                WHOLE_BATCH <= len(ds) <= ACK_CHUNK
                and flag == "00"  # XDEL needs the ids
                # the entries the last read took, in its order: the same receipts
                # (by_member looked already when they are all the ack holds)
                and (as_read or (len(members) > 1 and read_as_one(ds)))
            ):
                # One XREADGROUP > read's whole batch, acked as read: sent by its
                # count and bounds, without its ids (see ack_script.ACK).
                state.last_read = None
                by_count[len(calls)] = (keys, group, consumer, ds)
                low, high = ds[0].receipt.entry_id, ds[-1].receipt.entry_id
                args = [group, consumer, "001", low, high, len(ds)]
                calls.append((self._scripts.ack, keys, args))
                parts.append(ds)
                continue
            for ids, part in entry_chunks(ds, ACK_CHUNK):
                # The first and last id bound the batch when it is acked in the order
                # it was read; the script checks any id outside them on its own.
                args = [group, consumer, flag, ids[0], ids[-1], *ids]
                calls.append((self._scripts.ack, keys, args))
                parts.append(part)
        # Out of the keeper before the ack runs, under the renewal's lock: a
        # renewal after the XACK would find the entries gone and report them lost.
        async with self._lease_lock:
            self._keeper.drop(deliveries)
        # Stream keys whose replicas did not confirm the ack in time -> how many did.
        unconfirmed: dict[str, int] = {}
        try:
            retried: list[bool] = []
            replies = await self._run_settling(
                calls, flags_at=2, retried=retried, unconfirmed=unconfirmed
            )
            again = [i for i in by_count if replies[i] != 1]
            for i in again:
                if replies[i] == -1:  # a big group: the count's proof costs more
                    parts[i][0].subscription.state.count_acks = False
            for i in by_count:
                replies[i] = []  # acked by its count: nothing stale
            if again:
                # Not proved held (another member claimed one, something else is
                # held): the ids' call checks each id. After a retry the count's call
                # may have acked the batch before its reply was lost: the ids' call is
                # then a retry too (an entry pending for nobody is not stale).
                flag = "01" if retried[0] else "00"
                todo = [self._ack_by_ids(*by_count[i], flag) for i in again]
                done = await self._run_settling(todo, flags_at=2, unconfirmed=unconfirmed)
                for i, reply in zip(again, done, strict=True):
                    replies[i] = reply
        except BaseException:  # failed, or cancelled (applied or not): renewed again
            self._keeper.hold(d for d in deliveries if not d.settled)
            raise
        stale = stale_in(parts, replies)
        if unconfirmed:  # applied on the master: nothing left to renew
            raise self._unconfirmed("ack", deliveries, unconfirmed, stale)
        if stale:
            raise StaleDelivery(stale, "another consumer claimed it after its lease ran out")

    def _ack_by_ids(
        self,
        keys: list[str],
        group: str,
        consumer: str,
        deliveries: list[AsyncDelivery],
        flag: str,
    ) -> Call:
        """The ack script's call for ``deliveries`` by their ids, with ``flag``."""
        ids = [d.receipt.entry_id for d in deliveries]
        return (self._scripts.ack, keys, [group, consumer, flag, ids[0], ids[-1], *ids])

    def _unconfirmed(
        self,
        what: str,
        deliveries: Sequence[AsyncDelivery],
        unconfirmed: dict[str, int],
        stale: Sequence[AsyncDelivery],
    ) -> ReplicationTimeout:
        """The error for a settlement of ``deliveries`` made on the master, whose
        replicas fell short for the stream keys of ``unconfirmed`` (key -> how many
        confirmed); ``stale``: those it left to another member."""
        durable = self._settle_durable
        assert durable is not None
        topic_of = {d.receipt.key: d.subscription.topic for d in deliveries}
        short: dict[str, int] = {}
        for key, confirmed in unconfirmed.items():
            topic = topic_of[key]
            short[topic] = min(confirmed, short.get(topic, confirmed))
        return unconfirmed_settlement(
            self.url,
            what,
            deliveries,
            short,
            stale,
            replicas=durable.replicas,
            timeout=durable.timeout,
        )

    async def _extend(self, deliveries: Sequence[AsyncDelivery], seconds: float) -> None:
        # A lease is the entry's idle time: claims wait until it reaches the group's
        # lease length, so "seconds from now" is an idle time of lease - seconds.
        # Redis never sets a delivery time in the future (XCLAIM clamps IDLE/TIME to
        # now), so a lease can be at most the group's lease length; while this
        # consumer lives, the heartbeat renews it to that in full, never shorter.
        stale = await self._renew(deliveries, seconds)
        if stale:
            self._keeper.drop(stale)
            raise StaleDelivery(
                stale, "another consumer claimed it after its lease ran out, or it was trimmed away"
            )

    async def _renew(
        self, deliveries: Sequence[AsyncDelivery], seconds: float | None
    ) -> list[AsyncDelivery]:
        """Renew the leases of the entries still pending for their consumer, for
        ``seconds`` from now (``None``: the whole lease); return the others."""
        calls: list[Call] = []
        parts: list[list[AsyncDelivery]] = []
        for (key, group, consumer), ds in by_member_of(deliveries).items():
            # The whole lease (idle 0), or for an extend, minus the ms it is to last:
            # the script takes them from the group's lease length as it is now.
            idle = 0 if seconds is None else -max(1, int(seconds * 1000))
            for start in range(0, len(ds), RENEW_CHUNK):
                part = ds[start : start + RENEW_CHUNK]
                ids = [d.receipt.entry_id for d in part]
                low, high = min(ids, key=id_order), max(ids, key=id_order)
                args = [group, consumer, idle, low, high, *ids]
                topic = part[0].subscription.topic
                keys = [key, self._keys.topic(topic, "lost"), self._keys.topic(topic, "vt")]
                calls.append((self._scripts.renew, keys, args))
                parts.append(part)
        replies = await self._run_settling(calls, flags_at=None)
        return stale_in(parts, replies)

    async def _run_settling(
        self,
        calls: Sequence[Call],
        flags_at: int | None,
        retried: list[bool] | None = None,
        unconfirmed: dict[str, int] | None = None,
    ) -> list[Any]:
        """Run settling scripts (:func:`run_scripts`) on the settling client, retried
        through connection loss for up to ``reconnect_timeout`` seconds as every other
        call is.

        Sending a script again is safe because the retry says it is one (the second
        flag character at ``flags_at`` of their arguments): each script acts only on
        entries its member still holds, and an entry the lost attempt may have settled
        (pending for nobody; for a requeue, return or delay, held by anyone else) is
        not stale.
        redis-py resends nothing on this client, since it would send the first
        attempt's flags. A renewal (``flags_at`` None) can be sent again as it is.
        ``retried`` gets whether the calls were sent more than once.

        With the ``replicas`` option (``unconfirmed`` given), the scripts of each
        stream key wait for replicas on one connection, which writes after them (see
        :func:`_run_marked`); every key's are sent whatever the others' wait found,
        and ``unconfirmed`` gets each key whose replicas fell short, with how many
        confirmed (the fewest, over calls): the caller raises
        :class:`ReplicationTimeout` once its settlement is done. A retry's
        ``WAIT``, on a new connection, covers what the lost attempt wrote: ``WAIT``
        waits for the replication offset of its connection's last write, and every
        script flagged as a retry writes (adds and removes a member of its group's
        delayed ZSET, both propagated) after whatever the lost attempt wrote, even when
        that attempt left it nothing else to do. (Redis 7.0 notes the offset at every
        command of a connection; 7.2 and later only at a command that wrote, so a
        resent script that wrote nothing would have a ``WAIT`` that returns at once.)
        """
        attempts = 0
        short: dict[str, int] = {}

        async def run() -> list[Any]:
            nonlocal attempts
            attempts += 1
            short.clear()
            todo: Sequence[Call] = calls
            if attempts > 1 and flags_at is not None:
                todo = [
                    (
                        script,
                        keys,
                        [*a[:flags_at], a[flags_at][0] + "1" + a[flags_at][2:], *a[flags_at + 1 :]],
                    )
                    for script, keys, a in todo
                ]
            durable = self._settle_durable
            if durable is None or unconfirmed is None:  # a renewal needs no replica
                return await self._settle_scripts(todo)
            # ack and nack wait for replicas: one connection per stream key
            by_key: dict[str, list[int]] = {}
            for i, (_, keys, _) in enumerate(todo):
                by_key.setdefault(keys[0], []).append(i)
            replies: list[Any] = [None] * len(todo)
            for key, indexes in by_key.items():
                part = [todo[i] for i in indexes]
                got, confirmed = await durable.run_counted(
                    key, functools.partial(_run_marked, calls=part, key=key)
                )
                if confirmed < durable.replicas:
                    short[key] = confirmed
                for i, reply in zip(indexes, got, strict=True):
                    replies[i] = reply
            return replies

        replies = await self._reconnector.call(run)
        if retried is not None:
            retried.append(attempts > 1)
        if unconfirmed is not None:
            for key, confirmed in short.items():
                unconfirmed[key] = min(confirmed, unconfirmed.get(key, confirmed))
        return replies

    async def _settle_scripts(self, calls: Sequence[Call]) -> list[Any]:
        """:func:`run_scripts` on the settling client; one call on the settling
        connection the broker keeps (see :mod:`.._held_async`: a call that finds another
        one on it goes on a connection of the pool's, packed and read as there, not
        through redis-py's command path, at ~100k client instructions a command)."""
        held: Any = self._settle_held
        if len(calls) == 1 and held.reader.pooled:
            return await run_scripts(held, calls)
        return await run_scripts(self._settle_client, calls)

    async def _renew_held(self, held: list[AsyncDelivery]) -> list[AsyncDelivery]:
        """The lease keeper's beat: renew the leases still held; return those lost."""
        async with self._lease_lock:
            current = {id(d) for d in self._keeper.held()}
            alive = [d for d in held if id(d) in current]
            if not alive:
                return []
            return await self._renew(alive, None)
