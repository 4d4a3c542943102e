"""What a redis+list rescue call reads before it runs (see :func:`.upkeep_calls_async.rescue_once`):
the lease groups that are due and the server's time they are due by, the consumers by
heartbeat, and the batches of dead consumers it is given; and the reads and names the
upkeep calls share."""

from __future__ import annotations

import logging
import re
import threading
import weakref
from typing import Any

from redis.exceptions import NoPermissionError, ResponseError

from brokerkit._logging import log_fields
from brokerkit.backends.redis._client_async import is_cluster, time_at
from brokerkit.backends.redis._held_async import AsyncReader
from brokerkit.backends.redis.list.plan import TopicPlan
from brokerkit.backends.redis.list.preamble import CHUNK

__all__ = [
    "LIST_BYTES",
    "LIST_FEWEST",
    "LIST_FIRST",
    "LIST_STEP",
    "LIST_WHOLE",
    "LUA_NUMBER",
    "RESCUE_LEASES",
    "RESCUE_LIMIT",
    "due_groups",
    "listed",
    "name",
    "newest_batches",
    "read",
    "wire",
]


#: A rescue call visits at most this many dead consumers (and lease groups: no more
#: than RESCUE_LEASES, see RESCUE); a call reports it visited this many when more may be
#: left to do.
RESCUE_LIMIT = 1000
#: A rescue call looks at most at this many leases (and lease groups, and a dead
#: consumer's batches); the rest wait for the next call, which a consumer's maintenance
#: makes right after it. Measured on a private Redis 7.0 handing back 10,000 (one call
#: for all of them took 220 to 310 ms of server time), at most a call: 1.1 ms fetched
#: 1,000 at a time, 2.2-2.9 ms fetched one at a time (a batch and a lease group each),
#: expired or of a dead consumer (``python -m benchmarks.issue18 --part bookkeeping``).
RESCUE_LEASES = 100
#: A hash of at most this many fields (a dead consumer's fetches hash, a topic's
#: ``expiry`` hash) is listed in one ``HKEYS``, a bigger one by ``HSCAN`` in steps (see
#: :func:`listed`; the figures: docs/backends/redis-list.md, *Rescue*).
LIST_WHOLE = 4000
#: The most fields a listing step asks for (``HSCAN ... COUNT``): a step of 1,000 short
#: fields and values took about 0.4-0.9 ms.
LIST_STEP = 1000
#: The value bytes a step that reads values (before Redis 7.4, no ``NOVALUES``) is sized
#: to read: its COUNT is this over the mean length of the values the step before read,
#: between LIST_FEWEST and LIST_STEP; the first step, knowing none, asks for LIST_FIRST
#: (a fetches hash's value is one flag a delivery of its batch; the figures:
#: docs/backends/redis-list.md, *Rescue*).
LIST_BYTES = 128 * 1024
LIST_FIRST = 10
LIST_FEWEST = 10
#: What Lua's ``tonumber`` reads as a number (decimal, hexadecimal, inf or nan,
#: blanks around), as the scripts read the delivery time of a lease record.
LUA_NUMBER = re.compile(
    rb"\s*[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|0[xX][0-9a-fA-F]+|inf(?:inity)?|nan)\s*\Z",
    re.IGNORECASE,
)


async def due_groups(
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
    cluster = reader is None and is_cluster(client)
    first, consumers, *rest = await read(client, reader, *reads, *([] if cluster else [("TIME",)]))
    time = await time_at(client, keys.deadlines) if cluster else rest[0]
    now = int(time[0]) * 1000 + int(time[1]) // 1000
    beats = [(name(c), score) for c, score in _scored(consumers)]
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
        (due,) = await read(client, reader, latest)
    else:
        due.reverse()
    ended = [c for c, score in beats if score <= now]
    return now, [name(g) for g in due], [c for c, _ in beats], ended


def _scored(reply: list[Any]) -> list[tuple[Any, float]]:
    """A ``ZRANGE ... WITHSCORES`` reply as (member, score) pairs: flat (RESP2, no
    callback) or in pairs (RESP3, or a client's callback)."""
    if reply and isinstance(reply[0], list | tuple):
        return [(member, float(score)) for member, score in reply]
    return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]


log = logging.getLogger("brokerkit.redis")

#: The batches of dead consumers that rescues listed, oldest first, by the client and
#: the fetches hash: the next calls take the newest of them still there from the end
#: (see :func:`newest_batches`), at most this many hashes kept.
_LISTED: dict[tuple[int, str], list[str]] = {}
_LISTED_MOST = 8
#: Held while _LISTED is changed: a sync broker's threads (its maintenance, a caller's
#: rescue) share it; never held across I/O.
_LISTED_LOCK = threading.Lock()


async def newest_batches(
    client: Any, reader: AsyncReader | None, plan: TopicPlan, dead: list[str]
) -> list[tuple[str, str]]:
    """The batches of the ``dead`` consumers that RESCUE's second call is given, as
    (consumer, nonce as its fetches hash names it): at most RESCUE_LEASES in all (the
    call hands back no more deliveries than that), the consumers in the order the script
    visits them, each one's newest first (by delivery time, then nonce, as the script
    orders what it hands back) when it holds more than that, so that over the calls its
    oldest deliveries are handed back last: next out (fewer are given in its hash's
    order: a call may then take only part of them, and the order across calls is rough).

    Read here, outside any script, no command of it the longer the more batches: a
    consumer's fetches hash is listed (``HSCAN`` in bounded steps when it holds more
    than LIST_WHOLE: see :func:`listed`) and, when it holds more than the call takes,
    its batches' delivery times (their expiry values, CHUNK at a time), once; the
    listing is kept for the next calls, which check only the part they take is still
    there (HMGET of it, and HLEN: a listing that no longer covers the hash, or of which
    the part taken is gone, is read again). A wrong listing costs order, never a
    delivery: the script hands back what it is given and finds there."""
    pairs: list[tuple[str, str]] = []
    for consumer in dead:
        room = RESCUE_LEASES - len(pairs)
        if room <= 0:
            break
        fetches = plan.keys.fetches(consumer)
        names = await _kept_part(client, reader, (id(client), fetches), room)
        if names is None:
            names = await listed(client, reader, fetches, plan.topic)
            if len(names) > room:
                fields = wire([f"{nonce}:{consumer}" for nonce in names])
                reads = [
                    ("HMGET", plan.keys.expiry, *fields[i : i + CHUNK])
                    for i in range(0, len(fields), CHUNK)
                ]
                values = [v for reply in await read(client, reader, *reads) for v in reply]
                timed = sorted(zip(map(_delivered, values), names, strict=True))
                listing = [nonce for _, nonce in timed]
                with _LISTED_LOCK:
                    _LISTED.pop((id(client), fetches), None)
                    while len(_LISTED) >= _LISTED_MOST:
                        _LISTED.pop(next(iter(_LISTED)), None)
                    _LISTED[(id(client), fetches)] = listing
                names = listing[: -room - 1 : -1]
        pairs += [(consumer, nonce) for nonce in dict.fromkeys(names)]
    return pairs


#: The clients whose server refused ``HSCAN`` (an ACL without ``+hscan``, as the one
#: documented before it listed it; or no such command: renamed away): they list a hash
#: with ``HKEYS`` from then on.
_HSCAN_REFUSED: weakref.WeakSet[Any] = weakref.WeakSet()


#: The clients whose server refused ``HSCAN ... NOVALUES`` as an unknown argument
#: (before Redis 7.4): their steps read the values too, sized by them.
_NO_NOVALUES: weakref.WeakSet[Any] = weakref.WeakSet()


async def listed(
    client: Any, reader: AsyncReader | None, key: str, topic: str, held: int | None = None
) -> list[str]:
    """The fields of the hash ``key``, each once: in one ``HKEYS`` while it holds at most
    LIST_WHOLE (``HLEN`` first, unless the caller read it: ``held``), else by ``HSCAN``
    steps of at most about LIST_STEP fields or LIST_BYTES of values, until its cursor is
    back at 0 (each field there all along listed; one written meanwhile may not be: see
    :func:`_kept_part`) or 16 steps past four times the hash's fields were asked for
    (what was found is returned, the rest listed next time). ``NOVALUES`` is asked for
    until this client's server refuses it as a syntax error; any other error reply
    raises, for the caller to retry. A server refusing ``HSCAN`` (no permission, renamed
    away) has the hash listed in one ``HKEYS`` however big (logged once a client)."""
    if held is None:
        (held,) = await read(client, reader, ("HLEN", *wire([key])))
    if held > LIST_WHOLE and client not in _HSCAN_REFUSED:
        try:
            return await _scanned(client, reader, key, held)
        except ResponseError as refused:
            if not (isinstance(refused, NoPermissionError) or _unknown_command(refused)):
                raise
            _HSCAN_REFUSED.add(client)
            log.info(
                "the server refused HSCAN (%s); brokerkit lists a hash of a topic's "
                "deliveries with HKEYS, in one command however many there are: grant "
                "+hscan (and do not rename HSCAN)",
                refused,
                extra=log_fields(topic),
            )
    (whole,) = await read(client, reader, ("HKEYS", *wire([key])))
    return [name(n) for n in whole]


def _unknown_command(error: ResponseError) -> bool:
    """Whether ``error`` is a server's "unknown command" (``HSCAN`` renamed away)."""
    return type(error) is ResponseError and str(error).startswith("unknown command")


def _novalues_refused(error: ResponseError) -> bool:
    """Whether ``error`` is how a server before Redis 7.4 refuses ``HSCAN ... NOVALUES``
    (``-ERR syntax error``; Redis 6.2 and 7.0 alike), not a -BUSY, -TRYAGAIN, -MOVED..."""
    status = getattr(error, "status_code", None)
    return type(error) is ResponseError and status in (None, "ERR") and str(error) == "syntax error"


async def _scanned(client: Any, reader: AsyncReader | None, key: str, held: int) -> list[str]:
    """The fields of the hash ``key`` of ``held`` fields by ``HSCAN`` steps (see
    :func:`listed`)."""
    fields: dict[str, None] = {}
    cursor, sized, asked, steps = 0, LIST_FIRST, 0, 0
    bare, refused = client not in _NO_NOVALUES, False
    while True:
        count = LIST_STEP if bare else sized
        command = ("HSCAN", *wire([key]), cursor, "COUNT", count, *["NOVALUES"] * bare)
        try:
            if reader is None:
                reply = await client.execute_command(*command, no_values=bare)
            else:
                (reply,) = await read(client, reader, command)
        except ResponseError as error:
            if not bare or not _novalues_refused(error):
                raise
            bare, refused = False, True  # the same step again without NOVALUES
            continue
        if refused:  # answered without NOVALUES: it was the argument that was refused
            _NO_NOVALUES.add(client)
            refused = False
        cursor, found = int(reply[0]), reply[1]
        # raw ([field, value, ...], or [field, ...] bare) on a reader; through redis-py's
        # callback a dict, or a list of fields bare
        if isinstance(found, dict):
            names, values = list(found), list(found.values())
        else:
            names, values = (list(found), []) if bare else (found[::2], found[1::2])
        fields.update(dict.fromkeys(map(name, names)))
        steps, asked = steps + 1, asked + count
        if cursor == 0 or (steps >= 16 and asked >= 4 * held):
            return list(fields)
        if values:
            mean = max(sum(map(len, values)) / len(values), 1)
            sized = max(LIST_FEWEST, min(LIST_STEP, int(LIST_BYTES / mean)))


async def _kept_part(
    client: Any, reader: AsyncReader | None, key: tuple[int, str], room: int
) -> list[str] | None:
    """The newest ``room`` batches of a kept listing (see :func:`newest_batches`)
    still in the fetches hash, newest first, those gone dropped from it; None when it
    must be read again (none kept, none of its newest there, or more batches than
    listed). Its newest twice that many are looked at: the part the last call was given
    (mostly gone now, but for what it left) and the next."""
    listing = _LISTED.get(key)
    if not listing:
        return None
    part = listing[-2 * room :]
    hlen, flags = await read(
        client, reader, ("HLEN", *wire([key[1]])), ("HMGET", *wire([key[1], *part]))
    )
    there = [nonce for nonce, f in zip(part, flags, strict=True) if f is not None]
    kept = listing[: -len(part)] + there
    with _LISTED_LOCK:
        if _LISTED.get(key) is not listing:  # another thread's call replaced it meanwhile
            return there[: -room - 1 : -1] if there else None
        if not there or hlen > len(kept):
            _LISTED.pop(key, None)
            return [] if hlen == 0 else None
        _LISTED[key] = kept
    return there[: -room - 1 : -1]


def _delivered(value: bytes | None) -> float:
    """The delivery time in a batch's expiry value ``<deadline>.<delivered ms>``, as
    the script's delivered_of reads it (0 for none)."""
    if value is None:
        return 0
    _, dot, rest = value.partition(b".")
    if not dot or not LUA_NUMBER.match(rest):
        return 0
    try:
        return float(rest)
    except ValueError:  # hexadecimal
        return float(int(rest.strip(), 16))


async def read(client: Any, reader: AsyncReader | None, *commands: tuple[Any, ...]) -> list[Any]:
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


def name(value: bytes | str) -> str:
    """A name Redis returned (a member, a field) as text; bytes that are not UTF-8
    (another program wrote them: brokerkit's names are UTF-8) as surrogates, which
    :func:`wire` turns back into the same bytes."""
    return value.decode(errors="surrogateescape") if isinstance(value, bytes) else value


def wire(keys: list[str]) -> list[str | bytes]:
    """``keys`` as a script is given them: one holding a name :func:`name` read
    from bytes that are not UTF-8 as those bytes (redis-py encodes text strictly)."""
    return [key if key.isascii() else key.encode(errors="surrogateescape") for key in keys]
