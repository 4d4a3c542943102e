"""Reading XINFO STREAM, GROUPS and CONSUMERS of a stream into the typed
:class:`~.info.StreamTopicInfo` that ``inspect`` returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from brokerkit._inspect import DEAD_LETTER_GROUPS, ConsumerInfo
from brokerkit.backends.redis.stream.calls_async import StreamScripts
from brokerkit.backends.redis.stream.entries import id_order
from brokerkit.backends.redis.stream.info import StreamGroupInfo, StreamTopicInfo
from brokerkit.backends.redis.stream.scheduling import PARKING
from brokerkit.backends.redis.stream.scripts import shown, text

__all__ = [
    "LAG_COUNT_BYTES",
    "LAG_COUNT_LIMIT",
    "LAG_STEP_BYTES",
    "LAG_STEP_ENTRIES",
    "inspect_stream",
]

#: A pending entry idle this long (ms: 31 years) was backdated to the epoch by a
#: requeue or a hand-back (``XCLAIM ... TIME 0``, see :data:`.scripts.NACK`): it
#: waits for any member to claim it, and no member has it out.
_BACKDATED_MS = 10**12

#: Where Redis's lag is missing or not to be trusted, a group's entries after its
#: position are counted on the server up to this many (a lag of at least this many is
#: reported as this, with ``lag_exact`` False): counting reads the entries, bodies and
#: all, in calls of at most :data:`LAG_STEP_ENTRIES` entries.
LAG_COUNT_LIMIT = 10_000
#: And no further than this many bytes of their fields (and the one entry that
#: crosses it): a lag counted that far is a lower bound too. An inspect runs at every
#: Prometheus scrape: 10,000 entries of 64 KB took 0.73 s of server time a group.
LAG_COUNT_BYTES = 8 << 20
#: The entries one counting call reads at most (one an XRANGE).
LAG_STEP_ENTRIES = 500
#: The bytes of fields one counting call copies into the script at most, besides the
#: one entry that crosses it (the next entry's size is unknown until it is read).
LAG_STEP_BYTES = 1 << 20

#: Pending entries read a call while looking for the longest-idle one.
_PENDING_PAGE = 1000
#: At most this many pages of the pending entries list are read for the age.
_PENDING_PAGES = 10


async def inspect_stream(
    client: aioredis.Redis,
    scripts: StreamScripts,
    topic: str,
    *,
    key: str,
    dead_letter_key: str,
    lost_key: str,
    scheduled_key: str,
    delayed_key_of: Callable[[str], str],
) -> StreamTopicInfo:
    """Read XINFO STREAM, GROUPS and CONSUMERS of ``key`` (a handful of round trips),
    and count the held messages: delayed publishes (``scheduled_key``) and each
    group's delayed retries (``delayed_key_of(group)``), which are not in flight."""
    held = int(await client.zcard(scheduled_key))
    try:
        stream = await client.xinfo_stream(key)
    except ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise
        return StreamTopicInfo(
            topic=topic,
            length=0,
            dead_lettered=await _dead_letters(client, scripts, dead_letter_key),
            details={"key": key, "dead_letter_key": dead_letter_key, "exists": False},
            scheduled=held,
        )
    shape = _shape(stream)
    length, first, last = shape.length, shape.first, shape.last
    # A count that is not an integer (a careless hand wrote it) reads as 0; the
    # next entry lost resets it.
    lost = {
        shown(k): int(v) if v.isdigit() else 0 for k, v in (await client.hgetall(lost_key)).items()
    }
    groups = []
    oldest: float | None = None
    for raw in await client.xinfo_groups(key):
        group = await _group(client, scripts, key, raw, shape, lost)
        groups.append(group)
        held += int(await client.zcard(delayed_key_of(group.name)))
        if group.pending:
            age = await _longest_out(client, key, raw["name"])
            if age is not None:
                oldest = age if oldest is None else max(oldest, age)
    return StreamTopicInfo(
        topic=topic,
        length=length,
        oldest_waiting_age=await _oldest_waiting(client, key, groups, first),
        in_flight=sum(g.pending for g in groups),
        dead_lettered=await _dead_letters(client, scripts, dead_letter_key),
        oldest_in_flight_age=oldest,
        groups=tuple(groups),
        first_id=first,
        last_id=last,
        last_generated_id=text(stream["last-generated-id"]),
        trimmed_pending=sum(g.trimmed_pending for g in groups),
        lost_to_trimming=sum(g.lost_to_trimming for g in groups),
        details=_stream_details(stream, key, dead_letter_key),
        scheduled=held,
    )


async def _dead_letters(client: aioredis.Redis, scripts: StreamScripts, key: str) -> int:
    """The dead letters in the dead-letter stream ``key`` still waiting to be dealt
    with: the stream keeps settled entries for replay, so not its length but the
    fewer either group of :data:`DEAD_LETTER_GROUPS` that exists has not settled, its
    lag (as :func:`_lag` finds it) plus its pending (handed back and delayed ones too),
    never more than the stream holds; every entry where neither exists. Another group
    (a tail from "latest", say) does not count. Where that lag is not exact, the
    group's count is its upper bound, the stream's length: on Redis 6.2, which gives
    no lag (counting would read the entries, bodies and all, after the group's
    position), and on 7.x where the count stopped at :data:`LAG_COUNT_LIMIT` entries or
    :data:`LAG_COUNT_BYTES` before the stream's end."""
    try:
        shape = _shape(await client.xinfo_stream(key))
    except ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise
        return 0
    if not shape.length:
        return 0
    unsettled = [shape.length]
    for raw in await client.xinfo_groups(key):
        if shown(raw["name"]) not in DEAD_LETTER_GROUPS:
            continue
        lag, exact = 0, False
        if shape.added is not None:  # Redis 7 and later, else the bound
            lag, exact = await _lag(scripts, key, raw, shape)
        unsettled.append(lag + int(raw["pending"]) if exact else shape.length)
    return min(unsettled)


async def _group(
    client: aioredis.Redis,
    scripts: StreamScripts,
    key: str,
    raw: Mapping[str, Any],
    shape: _Shape,
    lost: Mapping[str, int],
) -> StreamGroupInfo:
    """The group's info. Another program's group or consumer may be named by any
    bytes: the commands are sent the name as it is, the info shows it (see
    :func:`shown`)."""
    raw_name, name = raw["name"], shown(raw["name"])
    pending = int(raw["pending"])
    delivered = text(raw["last-delivered-id"])
    lag, lag_exact = await _lag(scripts, key, raw, shape)
    trimmed = 0
    if pending:
        first = shape.first
        if first is None:
            trimmed = pending
        else:
            below = await client.xpending_range(key, raw_name, "-", f"({first}", pending)
            trimmed = len(below)
    members = await client.xinfo_consumers(key, raw_name)
    consumers = tuple(
        ConsumerInfo(shown(c["name"]), int(c["pending"]), int(str(c["idle"])) / 1000)
        for c in members
        if shown(c["name"]) != PARKING
    )
    # Delayed retries wait pending under the parking consumer: held, not in flight.
    parked = sum(int(c["pending"]) for c in members if shown(c["name"]) == PARKING)
    pending -= parked
    entries_read = raw.get("entries-read")
    info = StreamGroupInfo(
        name=name,
        pending=pending,
        lag=lag,
        lag_exact=lag_exact,
        consumers=consumers,
        last_delivered_id=delivered,
        entries_read=None if entries_read is None else int(entries_read),
        trimmed_pending=trimmed,
        lost_to_trimming=lost.get(name, 0),
    )
    return info


class _Shape(NamedTuple):
    """What XINFO STREAM says of a stream that a group's lag is worked out from."""

    length: int
    first: str | None
    last: str | None
    #: ``entries-added``: every entry ever added (None on Redis 6.2, which has none).
    added: int | None


def _shape(stream: Mapping[str, Any]) -> _Shape:
    added = stream.get("entries-added")
    return _Shape(
        length=int(stream["length"]),
        first=_entry_id(stream.get("first-entry")),
        last=_entry_id(stream.get("last-entry")),
        added=None if added is None else int(added),
    )


async def _lag(
    scripts: StreamScripts, key: str, raw: Mapping[str, Any], shape: _Shape
) -> tuple[int, bool]:
    """The entries after the position of the group ``raw`` (its XINFO GROUPS entry),
    and whether that is the exact count; when not, it is a lower bound (at least that
    many wait: :data:`LAG_COUNT_LIMIT`, or fewer of entries that came to
    :data:`LAG_COUNT_BYTES`), never an upper one.

    0 when the group is at or past the last entry, every one when it is before the
    first (no entry is read either way); Redis 7's lag where nothing was ever removed
    from the stream (``entries-added`` is its length). Else the entries are counted
    on the server: Redis gives no lag on 6.2, nor on 7.x after a deletion past the
    group's position, and the one it gives after a deletion or a trim is too high
    where the group read past removed entries (Redis 7.0's read counter goes up one
    an entry handed: a lag 1 too high at the last entry, say, for good). The count
    stops at Redis's lag and one more (the one more tells that Redis's lag was not
    too low, as another program's ``XGROUP SETID ... ENTRIESREAD`` can make it; if it
    was the count goes on), and at :data:`LAG_COUNT_LIMIT` entries or
    :data:`LAG_COUNT_BYTES` of them. The count takes calls of at
    most :data:`LAG_STEP_ENTRIES` entries and :data:`LAG_STEP_BYTES` of their fields
    (and one entry more), one round trip each, and other clients' commands run between
    them: it is not of one instant, an entry added or removed meanwhile counts or not
    (as the groups of one inspect are not read at one instant either)."""
    delivered = text(raw["last-delivered-id"])
    if shape.last is None or id_order(delivered) >= id_order(shape.last):
        return 0, True
    if shape.first is not None and id_order(delivered) < id_order(shape.first):
        return shape.length, True
    given = raw.get("lag")
    if given is not None and shape.added == shape.length and 0 < int(given) <= shape.length:
        return int(given), True
    limit = LAG_COUNT_LIMIT
    if given is not None:
        limit = min(int(given), shape.length, LAG_COUNT_LIMIT - 1) + 1
    counted, cursor, spent = await _count_after(scripts, key, delivered, limit, LAG_COUNT_BYTES)
    if cursor and counted == limit < LAG_COUNT_LIMIT and spent < LAG_COUNT_BYTES:
        left = LAG_COUNT_BYTES - spent
        more, cursor, _ = await _count_after(scripts, key, cursor, LAG_COUNT_LIMIT - counted, left)
        counted += more
    # exact only where the count reached the stream's end, its last entry as XINFO
    # gave it or past (else it stopped at a bound)
    return counted, not cursor or id_order(cursor) >= id_order(shape.last)


async def _count_after(
    scripts: StreamScripts, key: str, after: str, limit: int, budget: int
) -> tuple[int, str, int]:
    """The entries after the id ``after``, counted on the server no further than
    ``limit`` entries or ``budget`` bytes of their fields (and the entry that crosses
    it), the last id counted ('' once the stream's end was reached) and those bytes: in
    calls of :data:`LAG_STEP_ENTRIES` entries and :data:`LAG_STEP_BYTES` at most, each
    going on from the last id the one before counted."""
    counted, cursor, spent = 0, after, 0
    while counted < limit and spent < budget:
        most = min(LAG_STEP_BYTES, budget - spent)
        step = [cursor, min(LAG_STEP_ENTRIES, limit - counted), most]
        found, last, size = await scripts.count_after(keys=[key], args=step)
        counted, cursor, spent = counted + int(found), text(last), spent + int(size)
        if not cursor:
            break
    return counted, cursor, spent


async def _longest_out(client: aioredis.Redis, key: str, group: str | bytes) -> float | None:
    """Seconds the longest-idle entry a member of ``group`` holds has been idle, or
    None when no member holds one. Entries requeued or handed back and not claimed
    again (backdated to the epoch) and delayed retries (parked) are pending but out
    with nobody, so they are left out. The idle time, not the lowest id: a claim or a
    renewal resets an entry's idle time, whatever its id. Reads the pending entries
    list :data:`_PENDING_PAGE` entries a call, the first :data:`_PENDING_PAGES` pages
    at most (the oldest ids: an inspect stays a few round trips however much is
    pending)."""
    longest: int | None = None
    start = "-"
    for _ in range(_PENDING_PAGES):
        page = await client.xpending_range(key, group, start, "+", _PENDING_PAGE)
        for p in page:
            idle = int(str(p["time_since_delivered"]))
            if idle < _BACKDATED_MS and p["consumer"] not in (PARKING, PARKING.encode()):
                longest = idle if longest is None else max(longest, idle)
        if len(page) < _PENDING_PAGE:
            return None if longest is None else longest / 1000
        last = page[-1]["message_id"]
        start = "(" + (last.decode() if isinstance(last, bytes) else str(last))
    return None if longest is None else longest / 1000


async def _oldest_waiting(
    client: aioredis.Redis, key: str, groups: list[StreamGroupInfo], first: str | None
) -> float | None:
    """Seconds since the oldest entry some group has not been handed was added (the
    entry ids are the server's milliseconds), on the server's clock."""
    waiting: list[str] = []
    if not groups and first is not None:
        waiting.append(first)
    for group in groups:
        if group.lag:
            after = await client.xrange(key, f"({group.last_delivered_id}", "+", count=1)
            if after and after[0][0] is not None:
                waiting.append(text(after[0][0]))
    if not waiting:
        return None
    seconds, micros = await client.time()
    oldest_ms = min(int(entry.split("-")[0]) for entry in waiting)
    return max(seconds * 1000 + micros // 1000 - oldest_ms, 0) / 1000


def _entry_id(entry: Any) -> str | None:
    if not entry:
        return None
    return text(entry[0])


def _stream_details(stream: Mapping[str, Any], key: str, dead_letter_key: str) -> dict[str, Any]:
    details: dict[str, Any] = {"key": key, "dead_letter_key": dead_letter_key, "exists": True}
    for name, value in stream.items():
        if name in ("first-entry", "last-entry"):
            continue
        details[name] = text(value) if isinstance(value, bytes) else value
    return details
