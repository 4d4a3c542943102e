"""The Lua scripts that hold redis+list messages for a due time (see :mod:`.scripts`
for the keys, the arguments every script shares and the ``scheduled`` members)."""

from __future__ import annotations

from collections.abc import Sequence

from brokerkit.backends.redis.list.preamble import with_preamble

__all__ = ["HOLD", "RELEASE", "hold_member", "hold_members"]

#: ARGV[7] delay ms; ARGV[8...] members (:func:`hold_members`), all due at the server's
#: now + delay, all or none (a queue key of another type is refused first; a server
#: out of memory refuses the script at its first write). Returns ms until the next held
#: message is due.
HOLD = with_preamble(
    r"""
-- a queue of another type would never take them: refused before anything is held
local kind = redis.call('TYPE', QUEUE)['ok']
if kind ~= 'none' and kind ~= 'list' then
  return redis.error_reply('WRONGTYPE brokerkit: the queue key ' .. QUEUE .. ' holds a ' .. kind
    .. ', not a list; nothing was held')
end
local t = now_ms()
local due = due_after(tonumber(ARGV[7]))
local scored = {}
for i = 8, #ARGV do
  scored[#scored + 1] = due
  scored[#scored + 1] = ARGV[i]
end
call_chunked('ZADD', SCHEDULED, scored, 2)
return next_due_wait(t)
"""
)

#: ARGV[7] at most this many. Moves the held messages that are due to the queue;
#: returns {how many moved, ms until the next held message is due or -1}.
RELEASE = with_preamble(
    r"""
local t = now_ms()
local moved = release_due(t, tonumber(ARGV[7]))
return {moved, next_due_wait(t)}
"""
)


def hold_member(message_id: str, element: bytes, position: int = 0) -> bytes:
    """The ``scheduled`` member of a delayed publish, ``S<position><message id>\\n<element>``:
    ``position`` is the message's index in its batch, 8 hex digits, so that a batch, all
    due in the same millisecond, comes out in the order given (Redis orders members of
    equal score by their bytes; ids are not always in publish order: their counter wraps,
    the clock may step back); the id keeps members unique (two equal payloads are two
    messages). The release reads the element after the first ``\\n`` whatever the tag
    before it, so ``P<message id>\\n<element>``, as earlier versions wrote it, is released
    as well."""
    return b"S%08x%s\n%s" % (position, message_id.encode(), element)


def hold_members(message_ids: Sequence[str], elements: Sequence[bytes]) -> list[bytes]:
    """The members of a delayed batch, each at its position (:func:`hold_member`)."""
    return [hold_member(*pair, i) for i, pair in enumerate(zip(message_ids, elements, strict=True))]
