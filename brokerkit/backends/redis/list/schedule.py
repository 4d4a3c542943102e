"""The Lua scripts that hold redis+list messages for a due time (see :mod:`.scripts`
for the keys, the arguments every script shares and the ``scheduled`` members)."""

from __future__ import annotations

from brokerkit.backends.redis.list.preamble import with_preamble

__all__ = ["HOLD", "RELEASE", "hold_member"]

#: ARGV[7] delay ms; ARGV[8...] members (``P<message id>\n<element>``), all due at
#: the server's now + delay. Returns ms until the next held message is due.
HOLD = with_preamble(
    r"""
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


def hold_member(message_id: str, element: bytes) -> bytes:
    """The ``scheduled`` member of a delayed publish: the id keeps members unique
    (two equal payloads are two messages) and, ids being time-ordered, orders
    messages due in the same millisecond by publish order."""
    return b"P" + message_id.encode() + b"\n" + element
