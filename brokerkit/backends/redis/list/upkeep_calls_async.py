"""The calls that look after a redis+list topic as a whole (the scripts of
:mod:`.upkeep`): each first reads which consumers and lease groups there are, so that
the script is given their keys (see :meth:`.TopicPlan.keys_for`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import translate_errors
from brokerkit.backends.redis._held_async import AsyncHeldClient, AsyncReader
from brokerkit.backends.redis._lua_async import AsyncLua
from brokerkit.backends.redis._topic_scan_async import TYPE_CHUNK
from brokerkit.backends.redis.list.keys import ListKeys
from brokerkit.backends.redis.list.plan import TopicPlan, consumer_of
from brokerkit.backends.redis.list.preamble import CHUNK
from brokerkit.backends.redis.list.rescue_reads_async import LUA_NUMBER as _LUA_NUMBER
from brokerkit.backends.redis.list.rescue_reads_async import (
    RESCUE_LEASES,
    RESCUE_LIMIT,
    due_groups,
    newest_batches,
)
from brokerkit.backends.redis.list.rescue_reads_async import listed as _listed
from brokerkit.backends.redis.list.rescue_reads_async import name as _name
from brokerkit.backends.redis.list.rescue_reads_async import read as _read
from brokerkit.backends.redis.list.rescue_reads_async import wire as _wire

__all__ = [
    "INSPECT_LEASES",
    "MAINTENANCE_CALLS",
    "RESCUE_LEASES",
    "RESCUE_LIMIT",
    "counted_fields",
    "inspect_once",
    "live_topics",
    "rescue_once",
]


#: A consumer's maintenance makes at most this many rescue calls before its fetch: a
#: bound in calls, each call's commands bounded by its budget (RESCUE_LEASES, a batch
#: costing BATCH_COST more than its deliveries), so it bounds the work the fetch waits
#: behind (at most about 10,000 deliveries held in big batches handed back, in order;
#: about 3,400 held as batches of one); what is left waits for its next maintenance,
#: due at once. So however long a rescue lasts, it never starves the fetch.
MAINTENANCE_CALLS = 100
#: An INSPECT call counts the leases of at most this many fields of ``expiry`` (two
#: commands each at most, but for an earlier version's lease recorded without its
#: delivery time: three); a topic with more is inspected in more calls.
INSPECT_LEASES = 500


async def rescue_once(
    client: Any, run: AsyncLua, plan: TopicPlan, own: str, reader: AsyncReader | None = None
) -> list[Any]:
    """One RESCUE call (``run``) on ``client``: first which consumers and batches it
    may visit (the latest RESCUE_LEASES lease groups due, see
    :func:`.rescue_reads_async.due_groups`; the heartbeats ending first, and ``own``), so
    that their keys are declared; a bounded part of the batches of those whose heartbeat
    ended is declared too (see :func:`.rescue_reads_async.newest_batches`). A dead
    consumer the call did not know of is listed so in a second call when the first names
    it, and so is a lease hash too big for the script
    to read (see RESCUE's unfold): read here, outside any script (HKEYS of 10,000 short
    fields: 0.7 ms of server time, a script's own read 1.6 ms), the second call given
    the part of it to look at. The reply's first six values (see RESCUE).

    With a consumer's ``reader`` (its maintenance, before its first fetch and as leases
    fall due) the calls go on the consumer's connection, as its fetches do: through the
    pool's pipeline and script call a maintenance cost the client 184 us, not 143
    (messages of 100 B waiting), or 426 us, not 282 (10 KB), measured with redis-py 8.2
    on a private Redis 7.0."""
    keys = plan.keys
    held = reader if reader is not None and reader.pooled else None
    now, batches, consumers, ended = await due_groups(client, held, plan)
    names = [consumer_of(g) for g in batches] + consumers
    if own:
        names.append(own)
    args = [*plan.common, RESCUE_LIMIT, own, RESCUE_LEASES, now]
    on: Any = None if held is None else AsyncHeldClient(held)
    declared = plan.keys_for(names, batches)
    # the dead consumers' batches are given to this first call (as the script visits
    # them), not found unknown by it and given to a second
    first = await newest_batches(client, held, plan, ended) if ended else []
    parts = _wire([part for pair in first for part in pair])
    ended_lists = [keys.batch(nonce, c) for c, nonce in first]
    reply: list[Any] = await run(
        keys=_wire([*declared, *ended_lists]), args=[*args, len(first), *parts], client=on
    )
    if reply[6] or (len(reply) > 7 and reply[7]):
        dead = [_name(c) for c in reply[6]]
        unread = [_name(part) for part in reply[7]] if len(reply) > 7 and reply[7] else []
        hashes = _wire([keys.leases(unread[0])]) if unread else []
        fetched = await _read(client, held, *[("HKEYS", key) for key in hashes]) if unread else []
        given: list[Any] = []
        if unread and unread[1] == "orphans":
            given = [*_wire(unread), *await _orphans(client, held, plan, unread[0], fetched.pop())]
        elif unread:
            fields = [_name(f) for f in fetched.pop()]
            given = _wire([unread[0], unread[1], *_given(unread[1], fields)])
        # each batch by its key and its nonce as the fetches hash names it: a field that
        # is no nonce brokerkit writes (another program's, with a ':' in it too) is still
        # the script's batch of that name, not read back from a key as another (the
        # consumer then stayed unrescued, at every call)
        pairs = await newest_batches(client, held, plan, dead)
        lists = [keys.batch(nonce, c) for c, nonce in pairs]
        args = [*args, len(pairs), *_wire([part for pair in pairs for part in pair]), *given]
        again: list[Any] = await run(keys=_wire([*declared, *lists]), args=args, client=on)
        for index in (0, 2, 4):  # handed back, orphans, held messages released
            again[index] += reply[index]
        reply = again
    return reply[:6]


async def _orphans(
    client: Any, reader: AsyncReader | None, plan: TopicPlan, consumer: str, fields: list[Any]
) -> list[str]:
    """RESCUE's ARGV[A + 2...] for ``consumer``'s processing list, too long a lease hash
    beside it (its ``fields``, listed) for the script to match (see ``orphans`` in the
    preamble): the list's length, the hash's, and the indexes of the list's elements no
    lease record holds (as many records of an element, that many of its copies are
    leased). Read here, outside any script, CHUNK at a time (bodies are never copied
    into a script); the script takes them only while both lengths are still those."""
    proc, leases = _wire([plan.keys.processing(consumer), plan.keys.leases(consumer)])
    listed, recorded = await _read(client, reader, ("LLEN", proc), ("HLEN", leases))
    lists = [("LRANGE", proc, start, start + CHUNK - 1) for start in range(0, listed, CHUNK)]
    records = [("HMGET", leases, *fields[i : i + CHUNK]) for i in range(0, len(fields), CHUNK)]
    replies = await _read(client, reader, *lists, *records) if lists or records else []
    elements = [e for reply in replies[: len(lists)] for e in reply]
    values = [v for reply in replies[len(lists) :] for v in reply]
    held: dict[bytes, int] = {}
    for field, value in zip(fields, values, strict=True):
        if value is not None:
            element = record_element(field, value)
            held[element] = held.get(element, 0) + 1
    found = []
    for index, element in enumerate(elements):
        if held.get(element, 0) > 0:
            held[element] -= 1
        else:
            found.append(str(index))
    return [str(listed), str(recorded), *found]


def record_element(field: bytes, value: bytes) -> bytes:
    """The element of a lease an earlier version recorded under ``field`` in a lease
    hash, as ``record_of`` in the preamble reads it: under a whole receipt (a ``:`` in
    the field) the record is ``<delivered ms>:<element>``, anything else all element
    (as a record whose time is no number); under the short field, the value."""
    if b":" not in field:
        return value
    head, colon, rest = value.partition(b":")
    return rest if colon and _LUA_NUMBER.match(head) else value


def _given(group: str, fields: list[str]) -> list[str]:
    """RESCUE's ARGV[A + 2...] for a lease hash of ``fields`` too big for the script to
    read: for a lease group (see RESCUE's unfold), the index below the latest
    RESCUE_LEASES leases in it (the group's first when none is left below) and their
    fields; for a dead consumer's (no group), "" and RESCUE_LEASES of its fields."""
    parts = _group_parts(group) if group else None
    if parts is None:
        return ["", *fields[:RESCUE_LEASES]]
    nonce, first, n, tail = parts
    indexed = []
    for field in fields:
        index = _index_in(field, nonce, tail)
        if index is not None and first <= index < first + n:
            indexed.append((index, field))
    indexed.sort(reverse=True)
    cut = first
    if len(indexed) > RESCUE_LEASES:
        cut = indexed[RESCUE_LEASES - 1][0]
    return [str(cut), *[field for index, field in indexed if index >= cut]]


def _group_parts(group: str) -> tuple[str, int, int, str] | None:
    """(nonce, first index, how many, ':<consumer>') of a lease group
    ``<nonce><first>+<n>:<consumer>``, as RESCUE's group_parts reads one, or None."""
    colon, plus, dash = group.find(":"), group.find("+"), group.find("-")
    if min(colon, plus, dash) < 0 or plus > colon or dash > plus:
        return None
    first, n = group[dash + 1 : plus], group[plus + 1 : colon]
    if not (first.isascii() and first.isdigit() and n.isascii() and n.isdigit()):
        return None
    if int(n) < 1 or len(str(int(first) + int(n))) > 14:
        return None
    return group[: dash + 1], int(first), int(n), group[colon:]


def _index_in(field: str, nonce: str, tail: str) -> int | None:
    """The index a lease hash's field names under ``nonce``, as RESCUE's unfold reads
    it: ``<nonce><index>`` or ``<nonce><index><tail>``; None for any other field."""
    if not field.startswith(nonce):
        return None
    digits, colon, rest = field[len(nonce) :].partition(":")
    if colon and colon + rest != tail:
        return None
    return int(digits) if digits.isascii() and digits.isdigit() else None


async def inspect_once(client: Any, run: AsyncLua, plan: TopicPlan) -> Any:
    """The INSPECT script's reply (``run``) on ``client``, every consumer and every
    consumer a lease names declared. The leases are counted from the fields of the
    ``expiry`` hash (one a batch held, and one a delivery extended by hand), listed here
    outside any script as a rescue lists a dead consumer's batches (see
    :func:`.rescue_reads_async.listed`: ``HSCAN`` in bounded steps when it holds more than
    LIST_WHOLE, not one ``HKEYS`` of them all, which took 28 ms at 100,000), at most
    INSPECT_LEASES of them a call (10,000 deliveries extended by hand, each a value of
    its own there, took one call 53 ms of server time): a batch's value, whose
    flags count its deliveries, and the value of a lease that is no batch's; the values
    a batch's deliveries got of their own (extended by hand) are not looked at. Each
    call counts its part exactly when it runs; the last reports the topic, its counts
    summed with the earlier calls'. The consumers and the size of ``expiry`` are read
    in one round trip. A scan that its step bound cut short (a hash growing or rehashed
    under it) counts the leases of the batches it found only: fewer, until a next call."""
    expiry_key = _wire([plan.keys.expiry])
    consumers, held = await _read(
        client, None, ("ZRANGE", *_wire([plan.keys.consumers]), 0, -1), ("HLEN", *expiry_key)
    )
    registered = [_name(c) for c in consumers]
    expiry = await _listed(client, None, plan.keys.expiry, plan.topic, held)
    fields = counted_fields(expiry)
    earlier: dict[str, int] = {}  # leases by consumer, as the earlier calls counted them
    in_flight, oldest = 0, -1
    cut = max(len(fields) - INSPECT_LEASES, 0)  # the last call's part starts here
    for start in range(0, cut, INSPECT_LEASES):
        part = fields[start : min(start + INSPECT_LEASES, cut)]
        keys = plan.keys_for(consumer_of(f) for f in part)
        counts = await run(keys=_wire(keys), args=[*plan.common, "-", *_wire(part)])
        in_flight += counts[0]
        oldest = _earliest(oldest, counts[1])
        for index in range(2, len(counts), 2):
            name = _name(counts[index])
            earlier[name] = earlier.get(name, 0) + counts[index + 1]
    last, listed = fields[cut:], list(earlier)
    keys = plan.keys_for([*registered, *listed, *(consumer_of(f) for f in last)])
    reply = await run(keys=_wire(keys), args=[*plan.common, len(listed), *_wire([*listed, *last])])
    reply[3] += in_flight
    reply[4] = _earliest(reply[4], oldest)
    for index in range(6, 6 + 4 * reply[5], 4):
        reply[index + 3] += earlier.get(_name(reply[index]), 0)
    return reply


def counted_fields(fields: list[str]) -> list[str]:
    """The fields of the ``expiry`` hash that INSPECT counts the leases of: all but
    the receipts ``<nonce><index>:<consumer>`` of a batch ``<nonce>:<consumer>`` that is
    among ``fields`` (a delivery extended by hand: its batch's flags count it)."""
    listed = set(fields)
    kept = []
    for field in fields:
        colon, dash = field.find(":"), field.find("-")
        index = field[dash + 1 : colon]
        if (
            0 <= dash < colon - 1
            and index.isascii()
            and index.isdigit()
            and field[: dash + 1] + field[colon:] in listed
        ):
            continue
        kept.append(field)
    return kept


def _earliest(a: int, b: int) -> int:
    """The earlier of two delivery times in server ms, -1 meaning none."""
    return b if a < 0 else a if b < 0 else min(a, b)


#: How long after its heartbeat deadline a consumer still lists its topic: on a cluster
#: the deadline was written by the topic's node, and :func:`live_topics` asks one node
#: the time (another's clock may be ahead). Listing an abandoned topic a little longer
#: is harmless; leaving out a live one is not.
CLOCK_MARGIN_MS = 5000


async def live_topics(
    client: Any,
    url: BrokerURL,
    topics: list[str],
    keys_of: Callable[[str], ListKeys],
    signed_only: set[str],
) -> list[str]:
    """Of ``topics`` (as :func:`.scan_topics` found them), those that hold anything
    but consumers whose heartbeats ended. Only those of ``signed_only`` (found by their
    other keys alone, not their queue key) are asked about: one is listed if its queue,
    deliveries out or held messages exist, or one of its consumers is alive (its
    heartbeat deadline, its score in server ms, not older than the server's time less
    :data:`CLOCK_MARGIN_MS`), or a dead one's processing or moving list exists (a
    message BLMOVE took that the fetch never leased, on a cluster: a rescue hands it
    back), as RESCUE takes the others for dead (one that died on an empty topic, never
    leaving, does not keep it listed). Per :data:`.TYPE_CHUNK` topics asked about, the
    server's time (``TIME``; on a cluster, one node's), a pipeline asking each whether
    those keys exist and its consumers (a consumers key of another type holds none),
    then one asking whether the lists of the dead ones of those still unlisted exist
    (CHUNK keys an ``EXISTS``)."""
    asked = [topic for topic in topics if topic in signed_only]
    dropped: set[str] = set()
    with translate_errors(url):
        for start in range(0, len(asked), TYPE_CHUNK):
            chunk = asked[start : start + TYPE_CHUNK]
            seconds, micros = await client.time()
            now = int(seconds) * 1000 + int(micros) // 1000
            pipe = client.pipeline(transaction=False)
            for topic in chunk:
                keys = keys_of(topic)
                pipe.exists(keys.queue, keys.expiry, keys.scheduled)
                pipe.zrange(keys.consumers, 0, -1, withscores=True)
            replies = await pipe.execute(raise_on_error=False)
            lists: dict[str, list[str]] = {}
            for k, topic in enumerate(chunk):
                held, consumers = replies[2 * k], replies[2 * k + 1]
                if isinstance(held, Exception):
                    raise held
                if isinstance(consumers, Exception):
                    if "WRONGTYPE" not in str(consumers):
                        raise consumers
                    consumers = []
                if held or any(score > now - CLOCK_MARGIN_MS for _, score in consumers):
                    continue
                keys = keys_of(topic)
                names = [_name(member) for member, _ in consumers]
                lists[topic] = [key for c in names for key in (keys.processing(c), keys.moving(c))]
            pipe = client.pipeline(transaction=False)
            for names in lists.values():
                for i in range(0, len(names), CHUNK):
                    pipe.exists(*_wire(names[i : i + CHUNK]))
            found = iter(await pipe.execute() if lists else [])
            for topic, names in lists.items():
                if not sum(next(found) for _ in range(0, len(names), CHUNK)):
                    dropped.add(topic)
    return [topic for topic in topics if topic not in dropped]
