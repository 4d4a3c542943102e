"""The Lua scripts of the redis+stream backend that publish and nack, and the checks
and helpers every script of the backend shares (their text: no I/O here; they are
registered and run by :mod:`.calls_async`). The scripts that claim and renew leases
are in :mod:`.lease_scripts`, the ack script in :mod:`.ack_script`, those that manage
a group in :mod:`.group_scripts`.

Every step that must not be split by a crash or raced by another consumer is one
script: a script runs alone on the server, so "is this entry still pending for
me? then settle it" can never interleave with another consumer's claim.

All keys a script touches belong to one topic and share its hash tag, so each
script is also valid on a Redis Cluster.

Ownership is checked with ``XPENDING key group id id 1 consumer``: an entry is
*owned* by a consumer while it is in the group's pending entries list under that
consumer's name. A consumer whose lease ran out and whose entry was claimed by
another consumer no longer owns it, and its late ack, nack or renewal changes
nothing (the caller gets the id back as stale).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from brokerkit.backends.redis._stream_fields import escaped_text

#: A group's wake stream keeps this many entries at most (see :data:`NACK`): a
#: member needs one new entry to wake, never the old ones.
WAKE_LENGTH = 16

__all__ = ["NACK", "PUBLISH", "WAKE_LENGTH", "pairs", "shown", "text"]

#: What every script that runs a command with ``redis.pcall`` needs: an error reply
#: ends the script with that error unless it is the expected "no such group or
#: stream" (a denied command is never read as "not pending": every ack would be
#: stale and dead-lettering would stop in silence). A command the ACL refuses is
#: a ``NOPERM`` error naming the command, however the server words it (Redis 7.0
#: says only "can't run this command" inside a script). And the group's bookkeeping
#: is read defensively: a lease length or lost count that is not a number (another
#: program or a careless hand wrote it) is repaired, and a bookkeeping key of the
#: wrong type fails with an error that names the key and how to fix it.
_CHECKS = r"""
-- (Raised as a string: Redis 6.2's error handler cannot take an error table.)
local function fail(err, command)
  if string.sub(err, 1, 6) == 'NOPERM' or string.find(err, "can't run this command", 1, true) then
    error("NOPERM this user has no permissions to run the '" .. command ..
          "' command inside a brokerkit script (" .. err .. ")")
  end
  error(err)
end

-- A pcall reply, or nil for "no such group / no such key"; any other error raises.
local function checked(reply, command)
  if type(reply) ~= 'table' or not reply.err then return reply end
  local err = reply.err
  if string.sub(err, 1, 7) == 'NOGROUP' or string.find(err, 'no such key', 1, true) then
    return nil
  end
  fail(err, command)
end

-- A pcall reply on a bookkeeping hash; a key of another type is an error that
-- names it and says how to fix it, any other error raises as `fail` does.
local function bookkeeping(reply, key, what, command)
  if type(reply) ~= 'table' or not reply.err then return reply end
  if string.sub(reply.err, 1, 9) == 'WRONGTYPE' then
    error('the brokerkit bookkeeping key ' .. key .. ' (' .. what .. ') is not a hash; ' ..
          'delete it (DEL ' .. key .. ') and brokerkit makes it again')
  end
  fail(reply.err, command)
end

-- The group's lease length (ms) in the lease-length hash, at least `mine`. A value
-- that is not a number is replaced by `mine`, so a corrupt record never blocks.
local function lease_length(lease_key, group, mine)
  local raw = bookkeeping(redis.pcall('HGET', lease_key, group), lease_key,
                         'the lease length of each group', 'hget')
  local held = raw and tonumber(raw)
  if raw and (not held or held ~= held or held < 0 or held == math.huge) then
    redis.call('HSET', lease_key, group, mine)
    held = mine
  end
  return math.max(mine, held or 0)
end

-- Count `n` entries lost to trimming for `group`; a count that is not an integer
-- starts again from `n`.
local function count_lost(lost, group, n)
  local r = redis.pcall('HINCRBY', lost, group, n)
  if type(r) == 'table' and r.err and string.find(r.err, 'not an integer', 1, true) then
    redis.call('HSET', lost, group, n)
  else
    bookkeeping(r, lost, 'the entries lost to trimming', 'hincrby')
  end
end
"""

#: Stream-id comparison and the "does any group still need this entry?" test,
#: shared by the scripts that may delete acked entries.
_HELPERS = (
    _CHECKS
    + r"""
-- The delivery count of an entry pending for `consumer` (and its idle ms), or nil.
local function owned(key, group, consumer, id)
  local p = checked(redis.pcall('XPENDING', key, group, id, id, 1, consumer), 'xpending')
  if not p or #p == 0 then return nil end
  return p[1][4], p[1][3]
end

local function split_id(s)
  local ms, seq = string.match(s, '^(%d+)-(%d+)$')
  if not ms then return tonumber(s) or 0, 0 end
  return tonumber(ms), tonumber(seq)
end

local function id_less(a, b)
  local am, as = split_id(a)
  local bm, bs = split_id(b)
  return am < bm or (am == bm and as < bs)
end

-- A retried settlement's own write, made whatever the lost attempt left to do: a
-- member added to and removed from the group's delayed ZSET (`delayed`, declared by
-- the script), two writes that propagate after anything the lost attempt wrote. Its
-- WAIT, on a new connection, waits for them, so for the lost attempt's writes too
-- (Redis 7.2+ notes a connection's replication offset only at a command that wrote;
-- a connection that wrote nothing has an offset of 0 and its WAIT returns at once).
local RETRY_MARK = 'brokerkit:retried'
local function mark_retry(delayed)
  redis.call('ZADD', delayed, 0, RETRY_MARK)
  redis.call('ZREM', delayed, RETRY_MARK)
end

-- True when every group of the stream has read the entry and none holds it.
local function settled_everywhere(key, groups, id)
  for _, g in ipairs(groups) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if id_less(last, id) then return false end
    if #redis.call('XPENDING', key, name, id, id, 1) > 0 then return false end
  end
  return true
end
"""
)

# KEYS: stream.  ARGV: maxlen or '', max age ms or '', '~' or '=', the body field's
# name, then header, body, ...  Returns how many entries were added.
#
# The max age counts back from the server's clock (TIME), which gave the entries their
# ids: the publisher's clock may be off by any amount.
#
# All of a batch or none of it: the script runs alone, and a wrong key type fails
# the first XADD before anything is written. Trimming once after the batch leaves
# the stream as trimming on every XADD would; nobody sees the stream in between.
PUBLISH = r"""
local key, maxlen, age, how, field = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local first = redis.pcall('XADD', key, '*', 'bk1', ARGV[5], field, ARGV[6])
if type(first) == 'table' and first.err then return first end
for i = 7, #ARGV, 2 do
  redis.call('XADD', key, '*', 'bk1', ARGV[i], field, ARGV[i + 1])
end
if maxlen ~= '' then redis.call('XTRIM', key, 'MAXLEN', how, maxlen) end
if age ~= '' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('XTRIM', key, 'MINID', how, string.format('%d', math.max(0, now - tonumber(age))))
end
return (#ARGV - 4) / 2
"""

# KEYS: stream, dead-letter stream, the group's delayed ZSET (see .scheduling), the
# group's wake stream, lost-counter hash.
# ARGV: group, consumer, id, action ('requeue' | 'return' | 'dead' | 'delay'), flags
#       (delete-acked, then retry: '1'/'0' each), then the dead letter's fields
#       (field, value, ...), or for 'delay' the delay in ms and the parking consumer.
# Returns 1 when done, 0 when the entry was not pending for this consumer. On a
# retry (the previous attempt's reply was lost), an entry no longer pending for this
# consumer may have been settled by that attempt: a dead-letter of one pending for
# nobody is done (any other holder's is stale); a requeue, return or delay is done
# whoever holds the entry now, since the lost attempt's requeue hands it to the next
# member that fetches, and on the server that cannot be told apart from a claim made
# after the lease ran out (either way another member has the entry, or will). A
# retry also writes (mark_retry), so that the replica wait after it covers what the
# lost attempt wrote.
#
# Requeue keeps the entry pending but backdates its delivery time to the epoch, so
# the next XAUTOCLAIM of any consumer of the group takes it at once (and counts a
# delivery). The entry stays in place: re-adding it to the stream would hand it a
# second time to every *other* group too. Return is a requeue of an entry that was
# fetched but never handed to the application: its delivery count goes back down
# by one first, so that the next claim counts the same attempt again. Delay parks
# the entry (pending still, owned by the parking consumer, its idle time reset) with
# its due time in the group's delayed ZSET: only this group's fetches claim it, once due.
#
# A requeued or returned entry is claimable at once, but a member blocked in
# XREADGROUP on the stream is not woken by it: no entry was added. So both add an
# empty entry to the group's wake stream (WAKE_LENGTH entries at most; never created
# here: NOMKSTREAM), which every blocking read of the group waits on beside the
# stream, in the same XREADGROUP (the same hash slot). The member it wakes reclaims
# at once; the entry itself stays where it is, pending, so its attempt is counted
# once and a late settlement of it is refused as before.
#
# A requeue, return or delay of an entry that is gone (trimmed or XDELed while held)
# counts it in the lost hash, as FETCH does: it can never be delivered again. Its
# XCLAIM (Redis 7+) drops it from the pending entries list and claims nothing, which
# tells it, with no entry copied into Lua (an XRANGE would copy the body). A
# dead-letter needs no entry: the caller sends the message's fields.
NACK = (
    _HELPERS
    + r"""
local key, dlq = KEYS[1], KEYS[2]
local group, consumer, id, action = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local delete, retry = string.sub(ARGV[5], 1, 1) == '1', string.sub(ARGV[5], 2, 2) == '1'
if retry then mark_retry(KEYS[3]) end
local count, idle = owned(key, group, consumer, id)
if not count then
  if retry and (action ~= 'dead' or #redis.call('XPENDING', key, group, id, id, 1) == 0) then
    return 1
  end
  return 0
end
local function wake()
  redis.pcall('XADD', KEYS[4], 'NOMKSTREAM', 'MAXLEN', '=', """
    + str(WAKE_LENGTH)
    + r""", '*', 'w', '')
end
-- An XCLAIM of an entry pending for this consumer that claims nothing found it gone.
local function claimed(reply)
  if #reply > 0 then return true end
  count_lost(KEYS[5], group, 1)
  return false
end
if action == 'requeue' then
  if claimed(redis.call('XCLAIM', key, group, consumer, 0, id, 'TIME', 0, 'JUSTID')) then
    wake()
  end
  return 1
end
if action == 'delay' then
  local t = redis.call('TIME')
  -- rounded up: claimed by a fetch whose (rounded down) now is no earlier than exact
  local now = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000)
  if claimed(redis.call('XCLAIM', key, group, ARGV[7], 0, id, 'JUSTID')) then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), id)
  end
  return 1
end
if action == 'return' then
  -- Backdated already: the lost attempt returned it (idle since the epoch).
  if retry and idle > 1000000000000 then return 1 end
  if claimed(redis.call('XCLAIM', key, group, consumer, 0, id, 'TIME', 0,
                        'RETRYCOUNT', math.max(count - 1, 0), 'JUSTID')) then
    wake()
  end
  return 1
end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', dlq, '*', unpack(fields))
redis.call('XACK', key, group, id)
if delete and settled_everywhere(key, redis.call('XINFO', 'GROUPS', key), id) then
  redis.call('XDEL', key, id)
end
return 1
"""
)


def pairs(flat: Sequence[Any]) -> dict[bytes, bytes]:
    """A flat ``[field, value, ...]`` reply as a dict."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def text(value: bytes | str) -> str:
    """A reply value as str."""
    return value.decode() if isinstance(value, bytes) else value


def shown(name: bytes | str) -> str:
    """A name Redis holds (a group's, a consumer's) as text, one to one (see
    :func:`~brokerkit.backends.redis._stream_fields.escaped_text`): bytes that are not
    UTF-8, which any other program may name them with, as ``\\xff`` escapes, and text
    that reads as such escapes with its backslashes doubled, so two names never show
    as one."""
    return escaped_text(name) if isinstance(name, bytes) else name
