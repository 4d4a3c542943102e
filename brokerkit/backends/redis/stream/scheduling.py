"""Messages a redis+stream topic holds for a due time (no I/O: Lua text and member
encoding; the fetch script of :mod:`.lease_scripts` uses :data:`DUE_HELPERS`).

* A delayed publish waits outside the stream, in the topic's ``scheduled`` ZSET
  (``<prefix>:{<topic>}:scheduled``), scored by its due time in server milliseconds,
  as :func:`held_member`. Once due, the next fetch of any consumer of the topic XADDs
  it (trimmed as a publish is), so every group gets it once, in due order.
* A delayed retry (``nack(delay=...)``) stays in its group's pending entries list,
  owned by the group's parking consumer :data:`PARKING`, its due time in the group's
  ``delayed`` ZSET (``<prefix>:{<topic>}:delayed:<group>``): other groups are not
  touched. A fetch of the group claims it once due, counting a delivery. Should a
  member's fetch find a parked entry idle before it is due, it parks it again
  (idle time reset, a page of them in one XCLAIM), so it never comes out early and
  never holds up the claim of other idle entries (see :data:`.lease_scripts.FETCH`).
"""

from __future__ import annotations

from collections.abc import Sequence

from brokerkit._message import Message
from brokerkit.backends.redis._stream_fields import stream_header

__all__ = [
    "DUE_HELPERS",
    "HOLD",
    "PARKING",
    "RELEASE_BATCH",
    "held_by_list",
    "held_by_stream",
    "held_member",
    "held_members",
]

#: The consumer that holds a group's delayed retries while they wait; no
#: subscription may take this name.
PARKING = "brokerkit:delayed"

#: A fetch XADDs at most this many due publishes.
RELEASE_BATCH = 100

#: Lua: ``now_ms()``; ``release_publishes(key, scheduled, now, field, maxlen, age,
#: how)`` XADDs the held publishes due by ``now`` in due order and trims as a publish
#: does (``age``: the ``max_age`` in ms, entries older than ``now`` less it dropped);
#: ``next_due(scheduled, delayed, now)``: ms until the first of either is due, or -1.
DUE_HELPERS = (
    r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function release_publishes(key, scheduled, now, field, maxlen, age, how)
  local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, """
    + str(RELEASE_BATCH)
    + r""")
  if #due == 0 then return 0 end
  for _, m in ipairs(due) do
    -- <tag>\n<header length>\n<header><body> (the tag: see held_member)
    local a = string.find(m, '\n', 1, true)
    local b = a and string.find(m, '\n', a + 1, true)
    local n = b and tonumber(string.sub(m, a + 1, b - 1))
    if n then
      local header = string.sub(m, b + 1, b + n)
      redis.call('XADD', key, '*', 'bk1', header, field, string.sub(m, b + n + 1))
    end
    redis.call('ZREM', scheduled, m)
  end
  if maxlen ~= '' then redis.call('XTRIM', key, 'MAXLEN', how, maxlen) end
  if age ~= '' then
    redis.call('XTRIM', key, 'MINID', how, string.format('%d', math.max(0, now - tonumber(age))))
  end
  return #due
end

local function next_due(scheduled, delayed, now)
  local wait = -1
  for _, k in ipairs({scheduled, delayed}) do
    local first = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
    if first[2] then
      local w = math.max(tonumber(first[2]) - now, 0)
      if wait < 0 or w < wait then wait = w end
    end
  end
  return wait
end
"""
)

#: KEYS: the topic's scheduled ZSET, its stream. ARGV: delay ms, members
#: (:func:`held_members`). Returns how many were held; holds nothing, with a WRONGTYPE
#: error, when the stream's key holds another type (the messages could never go out).
HOLD = r"""
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'none' and kind ~= 'stream' then
  return redis.error_reply('WRONGTYPE the topic\'s key holds a ' .. kind .. ', not a stream')
end
local t = redis.call('TIME')
-- rounded up: released by a fetch whose (rounded down) now is no earlier than exact
local due = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV, 250 do
  local scored = {}
  for j = i, math.min(i + 249, #ARGV) do
    scored[#scored + 1] = due
    scored[#scored + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[1], unpack(scored))
end
return #ARGV - 1
"""


def held_member(message_id: str, header: str, payload: bytes, position: int = 0) -> bytes:
    """The ``scheduled`` member of a delayed publish: ``<tag>\\n<header length>\\n<header>
    <body>``, the tag ``S<position><message id>``. ``position`` is the message's index in
    its batch, 8 hex digits, so that a batch, all due in the same millisecond, comes out
    in the order given (Redis orders members of equal score by their bytes; ids are not
    always in publish order: their counter wraps, the clock may step back); the id keeps
    members unique. The release skips the tag whatever it holds, so a member as earlier
    versions wrote it, tagged ``<message id>`` alone, is released as well."""
    head = header.encode()
    tag = b"S%08x%s" % (position, message_id.replace("\n", " ").encode())
    return b"%s\n%d\n%s%s" % (tag, len(head), head, payload)


def held_members(messages: Sequence[Message]) -> list[bytes]:
    """The members of a delayed batch, each at its position (:func:`held_member`)."""
    return [held_member(m.id, stream_header(m), m.payload, i) for i, m in enumerate(messages)]


def held_by_stream(member: bytes) -> bool:
    """Whether a member of a ``scheduled`` sorted set has redis+stream's form (see
    :func:`held_member`): ``<tag>\\n<header length, decimal>\\n<header><body>``, the
    header no shorter than its length says and starting with ``{"id":`` (the JSON
    form) or with the message id of the tag (``S<8 hex digits><id>``, or ``<id>`` alone as earlier
    versions wrote it) and a line break (the line form). redis+list's members
    (``<tag>\\n<element>``, the element an envelope ``BK1...``, a wrapped ``BKR<n>\\n...``
    or a raw element) never have it, unless a raw element itself starts so."""
    tag, _, rest = member.partition(b"\n")
    digits, newline, after = rest.partition(b"\n")
    if not newline or not digits.isdigit():
        return False
    significant = digits.lstrip(b"0")  # no member is 10**18 bytes long
    if len(significant) > 18 or int(significant or b"0") > len(after):
        return False
    header = after[: int(significant or b"0")]
    if header.startswith(b'{"id":'):
        return True
    ids = [tag]
    if tag[:1] == b"S" and len(tag) >= 9 and all(c in _HEX for c in tag[1:9]):
        ids.append(tag[9:])
    return any(header.startswith(i + b"\n") for i in ids)


def held_by_list(member: bytes) -> bool:
    """Whether a member of a ``scheduled`` sorted set is redis+list's: any that is not
    in redis+stream's form (:func:`held_by_stream`), another program's included."""
    return not held_by_stream(member)


_HEX = frozenset(b"0123456789abcdefABCDEF")
