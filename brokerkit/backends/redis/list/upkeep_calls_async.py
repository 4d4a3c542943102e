"""The calls that look after a redis+list topic as a whole (the scripts of
:mod:`.upkeep`): each first reads which consumers and lease groups there are, so that
the script is given their keys (see :meth:`.TopicPlan.keys_for`)."""

from __future__ import annotations

import re
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


#: A rescue call visits at most this many dead consumers (and lease groups: no more
#: than RESCUE_LEASES, see RESCUE); a call reports it visited this many when more may be
#: left to do.
RESCUE_LIMIT = 1000
#: A rescue call looks at most at this many leases; the rest wait for the next call,
#: which a consumer's maintenance makes right after it. Measured on a private Redis
#: 7.0 handing back 10,000 (one call for all of them took 220 to 310 ms of server
#: time): expired leases 1 to 1.3 ms a call at the median, 2.7 ms at most; a dead
#: consumer's 1.6 to 1.9 ms, 4.5 to 6.6 ms at most (each call lists the names of
#: what is left in its lease hash: HKEYS, as no command the documented ACL grants
#: reads part of a hash; past RESCUE's UNFOLD_READ fields the caller lists them).
RESCUE_LEASES = 100
#: A consumer's maintenance makes at most this many rescue calls before its fetch
#: (10,000 leases handed back, in order); what is left waits for its next maintenance,
#: due at once. So however long a rescue lasts, it never starves the fetch.
MAINTENANCE_CALLS = 100
#: What Lua's ``tonumber`` reads as a number (decimal, hexadecimal, inf or nan,
#: blanks around), as the scripts read the delivery time of a lease record.
_LUA_NUMBER = re.compile(
    rb"\s*[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|0[xX][0-9a-fA-F]+|inf(?:inity)?|nan)\s*\Z",
    re.IGNORECASE,
)

#: An INSPECT call counts the leases of at most this many fields of ``expiry`` (two
#: commands each at most, but for an earlier version's lease recorded without its
#: delivery time: three); a topic with more is inspected in more calls.
INSPECT_LEASES = 500


async def rescue_once(
    client: Any, run: AsyncLua, plan: TopicPlan, own: str, reader: AsyncReader | None = None
) -> list[Any]:
    """One RESCUE call (``run``) on ``client``: first which consumers and batches it
    may visit (the latest RESCUE_LEASES lease groups due, see :func:`_due_groups`; the
    heartbeats ending first, and ``own``), so that their keys are declared; a bounded
    part of the batches of those whose heartbeat ended is declared too (see
    :func:`_newest_batches`). A dead consumer the call did not know of is listed so in a
    second call when the first names it, and so is a lease hash too big for the script
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
    now, batches, consumers, ended = await _due_groups(client, held, plan)
    names = [consumer_of(g) for g in batches] + consumers
    if own:
        names.append(own)
    args = [*plan.common, RESCUE_LIMIT, own, RESCUE_LEASES, now]
    on: Any = None if held is None else AsyncHeldClient(held)
    declared = plan.keys_for(names, batches)
    # the dead consumers' batches are given to this first call (as the script visits
    # them), not found unknown by it and given to a second
    first = await _newest_batches(client, held, plan, ended) if ended else []
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
        pairs = await _newest_batches(client, held, plan, dead)
        lists = [keys.batch(nonce, c) for c, nonce in pairs]
        args = [*args, len(pairs), *_wire([part for pair in pairs for part in pair]), *given]
        again: list[Any] = await run(keys=_wire([*declared, *lists]), args=args, client=on)
        for index in (0, 2, 4):  # handed back, orphans, held messages released
            again[index] += reply[index]
        reply = again
    return reply[:6]


async def _due_groups(
    client: Any, reader: AsyncReader | None, plan: TopicPlan
) -> tuple[int, list[str], list[str], list[str]]:
    """(the server's time in ms, the latest RESCUE_LEASES lease groups due by then,
    the first RESCUE_LIMIT consumers by heartbeat deadline, those of them whose
    heartbeat ended by then): what RESCUE may visit, given that time (see its ARGV[10]).
    The first RESCUE_LEASES groups are read with the time; only when each of those is
    due (a backlog) are the latest due read apart, in a second round trip. (Before, the
    first RESCUE_LIMIT groups were read and declared, and a call took the latest
    RESCUE_LEASES of those: with more due, each next call took the ones above, the
    later deliveries ending up next out.)"""
    keys = plan.keys
    reads = [
        ("ZRANGE", keys.deadlines, 0, RESCUE_LEASES - 1, "WITHSCORES"),
        ("ZRANGE", keys.consumers, 0, RESCUE_LIMIT - 1, "WITHSCORES"),
    ]
    # On a cluster the time is the topic's node's, whose clock the script reads: another
    # node's ahead of it would have the call given groups the script takes for not due
    # yet, and read none it was given (no progress while so many fall due).
    cluster = reader is None and getattr(client, "connection_pool", None) is None
    first, consumers, *rest = await _read(client, reader, *reads, *([] if cluster else [("TIME",)]))
    if cluster:
        node = client.get_node_from_key(keys.deadlines)
        time = await client.execute_command("TIME", target_nodes=node)
    else:
        (time,) = rest
    now = int(time[0]) * 1000 + int(time[1]) // 1000
    beats = [(_name(c), score) for c, score in _scored(consumers)]
    scored = _scored(first)
    due = [member for member, score in scored if score <= now]
    if len(due) == RESCUE_LEASES:
        latest = (
            "ZRANGE",
            keys.deadlines,
            now,
            "-inf",
            "BYSCORE",
            "REV",
            "LIMIT",
            0,
            RESCUE_LEASES,
        )
        (due,) = await _read(client, reader, latest)
    else:
        due.reverse()
    ended = [c for c, score in beats if score <= now]
    return now, [_name(g) for g in due], [c for c, _ in beats], ended


def _scored(reply: list[Any]) -> list[tuple[Any, float]]:
    """A ``ZRANGE ... WITHSCORES`` reply as (member, score) pairs: flat (RESP2, no
    callback) or in pairs (RESP3, or a client's callback)."""
    if reply and isinstance(reply[0], list | tuple):
        return [(member, float(score)) for member, score in reply]
    return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]


#: The batches of dead consumers that rescues listed, oldest first, by the client and
#: the fetches hash: the next calls take the newest of them still there from the end
#: (see :func:`_newest_batches`), at most this many hashes kept.
_LISTED: dict[tuple[int, str], list[str]] = {}
_LISTED_MOST = 8


async def _newest_batches(
    client: Any, reader: AsyncReader | None, plan: TopicPlan, dead: list[str]
) -> list[tuple[str, str]]:
    """The batches of the ``dead`` consumers that RESCUE's second call is given, as
    (consumer, nonce as its fetches hash names it): at most RESCUE_LEASES in all (the
    call hands back no more deliveries than that), the consumers in the order the script
    visits them, each one's newest first (by delivery time, then nonce, as the script
    orders what it hands back) when it holds more than that, so that over the calls its
    oldest deliveries are handed back last: next out (fewer are given in its hash's
    order: a call may then take only part of them, and the order across calls is rough).

    Read here, outside any script: a consumer's fetches hash is listed (HKEYS) and, when
    it holds more than that, its batches' delivery times (their expiry values, CHUNK at a
    time), once; the listing is kept for the next calls, which check only the part they
    take is still there (HMGET of it, and HLEN: a listing that no longer covers the hash,
    or of which the part taken is gone, is read again). A wrong listing costs order,
    never a delivery: the script hands back what it is given and finds there."""
    pairs: list[tuple[str, str]] = []
    for consumer in dead:
        room = RESCUE_LEASES - len(pairs)
        if room <= 0:
            break
        fetches = plan.keys.fetches(consumer)
        names = await _kept_part(client, reader, (id(client), fetches), room)
        if names is None:
            (listed,) = await _read(client, reader, ("HKEYS", *_wire([fetches])))
            names = [_name(n) for n in listed]
            if len(names) > room:
                fields = _wire([f"{nonce}:{consumer}" for nonce in names])
                reads = [
                    ("HMGET", plan.keys.expiry, *fields[i : i + CHUNK])
                    for i in range(0, len(fields), CHUNK)
                ]
                values = [v for reply in await _read(client, reader, *reads) for v in reply]
                timed = sorted(zip(map(_delivered, values), names, strict=True))
                listing = [nonce for _, nonce in timed]
                _LISTED.pop((id(client), fetches), None)
                while len(_LISTED) >= _LISTED_MOST:
                    del _LISTED[next(iter(_LISTED))]
                _LISTED[(id(client), fetches)] = listing
                names = listing[: -room - 1 : -1]
        pairs += [(consumer, nonce) for nonce in dict.fromkeys(names)]
    return pairs


async def _kept_part(
    client: Any, reader: AsyncReader | None, key: tuple[int, str], room: int
) -> list[str] | None:
    """The newest ``room`` batches of a kept listing (see :func:`_newest_batches`)
    still in the fetches hash, newest first, those gone dropped from it; None when it
    must be read again (none kept, none of its newest there, or more batches than
    listed). Its newest twice that many are looked at: the part the last call was given
    (mostly gone now, but for what it left) and the next."""
    listing = _LISTED.get(key)
    if not listing:
        return None
    part = listing[-2 * room :]
    hlen, flags = await _read(
        client, reader, ("HLEN", *_wire([key[1]])), ("HMGET", *_wire([key[1], *part]))
    )
    there = [nonce for nonce, f in zip(part, flags, strict=True) if f is not None]
    del listing[-len(part) :]
    listing.extend(there)
    if not there or hlen > len(listing):
        _LISTED.pop(key, None)
        return [] if hlen == 0 else None
    return there[: -room - 1 : -1]


def _delivered(value: bytes | None) -> float:
    """The delivery time in a batch's expiry value ``<deadline>.<delivered ms>``, as
    the script's delivered_of reads it (0 for none)."""
    if value is None:
        return 0
    _, dot, rest = value.partition(b".")
    if not dot or not _LUA_NUMBER.match(rest):
        return 0
    try:
        return float(rest)
    except ValueError:  # hexadecimal
        return float(int(rest.strip(), 16))


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


async def _read(client: Any, reader: AsyncReader | None, *commands: tuple[Any, ...]) -> list[Any]:
    """The replies to ``commands`` (reads whose replies need no callback), sent at once
    on ``reader`` when given, else in a pipeline of ``client``'s; an error reply
    raises."""
    if reader is None:
        pipe: Any
        async with client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute())
    replies = await reader.execute_many(*commands)
    failed = next((r for r in replies if isinstance(r, Exception)), None)
    if failed is not None:
        raise failed
    return replies


async def inspect_once(client: Any, run: AsyncLua, plan: TopicPlan) -> Any:
    """The INSPECT script's reply (``run``) on ``client``, every consumer and every
    consumer a lease names declared. The leases are counted from the fields of the
    ``expiry`` hash, listed here outside any script (HKEYS: at most one a delivery held),
    at most INSPECT_LEASES of them a call (10,000 deliveries extended by hand, each a
    value of its own there, took one call 53 ms of server time): a batch's value, whose
    flags count its deliveries, and the value of a lease that is no batch's; the values
    a batch's deliveries got of their own (extended by hand) are not looked at. Each
    call counts its part exactly when it runs; the last reports the topic, its counts
    summed with the earlier calls'."""
    pipe: Any
    async with client.pipeline(transaction=False) as pipe:
        pipe.zrange(plan.keys.consumers, 0, -1)
        pipe.hkeys(plan.keys.expiry)
        consumers, receipts = await pipe.execute()
    registered = [_name(c) for c in consumers]
    fields = counted_fields([_name(r) for r in receipts])
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


def _name(value: bytes | str) -> str:
    """A name Redis returned (a member, a field) as text; bytes that are not UTF-8
    (another program wrote them: brokerkit's names are UTF-8) as surrogates, which
    :func:`_wire` turns back into the same bytes."""
    return value.decode(errors="surrogateescape") if isinstance(value, bytes) else value


def _wire(keys: list[str]) -> list[str | bytes]:
    """``keys`` as a script is given them: one holding a name :func:`_name` read
    from bytes that are not UTF-8 as those bytes (redis-py encodes text strictly)."""
    return [key if key.isascii() else key.encode(errors="surrogateescape") for key in keys]


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
