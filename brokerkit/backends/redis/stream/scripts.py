"""The Lua scripts of the redis+stream backend (their text: no I/O here; they are
registered and run by :mod:`.calls_async`).

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

from brokerkit.backends.redis.stream.scheduling import DUE_HELPERS

#: A group's wake stream keeps this many entries at most (see :data:`NACK`): a
#: member needs one new entry to wake, never the old ones.
WAKE_LENGTH = 16

__all__ = [
    "FETCH",
    "LOCATE_PAGE",
    "NACK",
    "PUBLISH",
    "REAP",
    "RENEW",
    "REPARK_BUDGET",
    "WAKE_LENGTH",
    "pairs",
    "text",
]

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

#: FETCH lists idle pending entries this many at a time (the first page: ten).
LOCATE_PAGE = 100

#: A FETCH call parks again at most about this many idle delayed retries, then stops
#: and says where to go on (its caller claims again at once).
REPARK_BUDGET = 300

# KEYS: stream, lost-counter hash, lease-length hash, the topic's scheduled ZSET, the
# group's delayed ZSET (see .scheduling), the group's wake stream (see NACK).
# ARGV: group, consumer, min idle ms, claim cursor, count (unused: one entry comes
# back at most), group start id, the body field, maxlen or '', minid or '', '~' or
# '=', the parking consumer, then the ids of wake entries this consumer read, which
# are acked.
# The min idle time is the larger of this consumer's visibility timeout and the
# group's (the longest any member subscribed with), so that no member claims an
# entry that a member with a longer lease still holds.
# Returns {next cursor, {{id, fields, deliveries}...} claimed, ms until a held
# message is due or -1}. The cursor is '0-0' when nothing more was found idle; any
# other cursor means "more may be waiting: claim again at once" (an entry was
# claimed, or the call stopped at its budget).
#
# First XAUTOCLAIM ... COUNT 1 from the cursor (it scans ten pending entries at
# most): it claims an idle entry there, and finds the group missing (first use, or
# the stream was lost) before anything writes to the stream, so that the group is
# made before a due publish is released into the new stream (a group made again at
# '$' after the release would never see it). Then the topic's delayed publishes
# that are due join the stream; then, if nothing was claimed, a delayed retry of
# the group that is due is claimed (alone, as any entry that comes back).
#
# Else, when the pending entries list is longer than that scan, the next idle entry
# is looked for with XPENDING ... IDLE, which lists only entries idle past the lease
# (Redis skips the others itself, about 70 ns each: 0.7 ms for 10,000 held or
# parked entries), from where the scan ended to the end, then from the start to the
# cursor. A delayed retry it lists that is not due yet (parked, idle past the lease
# while it waits) is parked again, its idle time reset, with the others of its page
# in one XCLAIM ... JUSTID, and the listing goes on: parked retries never take the
# place of the entry that is looked for, and once parked again they cost the next
# listing nothing but the skip. At most about REPARK_BUDGET are parked again per
# call (~1 ms); the call then returns where it stopped. The first other idle entry
# is claimed with XAUTOCLAIM ... COUNT 1 from its id.
#
# New entries are not read here: when nothing was claimed, the caller reads them
# with its usual XREADGROUP, whose reply goes out straight from the stream. Read
# here, every field would be copied into Lua and out again, a server time that
# grows with the bodies (a first fetch of 100 entries of 10 KB took 1.6 ms so,
# and takes 0.2 ms as this script and XREADGROUP; of 100 bytes, 0.3 and 0.1 ms).
#
# An entry that comes back (its lease ran out, or it was nacked or returned) is
# claimed alone (this script never reads new entries: the caller reads them with
# XREADGROUP when nothing came back): it goes out in a batch of its
# own. A poison entry that kills its consumer every time therefore takes no batch
# mates with it: entries that were fetched with it but never handed to the
# application are each handed out on their own next, counted once more at most.
#
# XAUTOCLAIM is atomic: of any number of consumers running this at once, each idle
# entry is claimed by exactly one (its idle time resets to 0 as it is claimed).
# JUSTID keeps the reply free of deleted entries' nils (Redis 6.2) and leaves the
# delivery counter alone, so the script counts the delivery itself (RETRYCOUNT).
# A claimed id whose entry is gone (trimmed or XDELed while pending) can never be
# delivered: it is acked and counted in the lost hash, never dropped silently. So is
# a parked retry that Redis 7 drops from the list as it is parked again (its entry
# is gone); on Redis 6.2 it stays parked and is found gone when due.
FETCH = (
    _HELPERS
    + DUE_HELPERS
    + r"""
local key, lost, scheduled, delayed = KEYS[1], KEYS[2], KEYS[4], KEYS[5]
local group, consumer, cursor = ARGV[1], ARGV[2], ARGV[4]
local min_idle = lease_length(KEYS[3], group, tonumber(ARGV[3]))
local start, parking = ARGV[6], ARGV[11]
local claimed, gone = {}, 0
local now = now_ms()
for i = 12, #ARGV, 1000 do  -- a wake stream's group may be gone: nothing to ack then
  redis.pcall('XACK', KEYS[6], group, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end

-- Park again, in one XCLAIM, delayed retries found idle before they are due.
local function repark(ids)
  if #ids == 0 then return end
  local claim = {'XCLAIM', key, group, parking, 0}
  for _, id in ipairs(ids) do claim[#claim + 1] = id end
  claim[#claim + 1] = 'JUSTID'
  local kept = redis.call(unpack(claim))
  if #kept < #ids then  -- Redis 7+: an entry that is gone was dropped from the list
    local got = {}
    for _, id in ipairs(kept) do got[id] = true end
    for _, id in ipairs(ids) do
      if not got[id] then
        redis.call('ZREM', delayed, id)
        gone = gone + 1
      end
    end
  end
end

-- XAUTOCLAIM ... COUNT 1 from `from`: a delayed retry it claims that is not due yet
-- is parked again, one that is gone acked; any other is delivered. Nil when the
-- group is missing; else the cursor after what it scanned.
local function autoclaim(from)
  local reply = redis.pcall('XAUTOCLAIM', key, group, consumer, min_idle, from,
                            'COUNT', 1, 'JUSTID')
  if reply.err then
    if string.sub(reply.err, 1, 7) ~= 'NOGROUP' then fail(reply.err, 'xautoclaim') end
    return nil
  end
  local park = {}
  for _, id in ipairs(reply[2]) do
    local held = redis.call('ZSCORE', delayed, id)
    if held and tonumber(held) > now then
      park[#park + 1] = id  -- a delayed retry, idle but not due: parked again
    else
      local entry = redis.call('XRANGE', key, id, id)
      if #entry == 0 then
        redis.call('XACK', key, group, id)
        gone = gone + 1
      else
        local deliveries = (owned(key, group, consumer, id) or 0) + 1
        redis.call('XCLAIM', key, group, consumer, 0, id, 'RETRYCOUNT', deliveries, 'JUSTID')
        claimed[#claimed + 1] = {id, entry[1][2], deliveries}
        if held then redis.call('ZREM', delayed, id) end
      end
    end
  end
  repark(park)
  if reply[3] then gone = gone + #reply[3] end
  return reply[1]
end

local scanned = autoclaim(cursor)
if not scanned then
  -- First use, or the stream was lost (a restart without persistence, a DEL): the
  -- group is made before any due publish is released into the stream.
  redis.call('XGROUP', 'CREATE', key, group, start, 'MKSTREAM')
end
release_publishes(key, scheduled, now, ARGV[7], ARGV[8], ARGV[9], ARGV[10])
-- A delayed retry that is due, if it is still parked: claimed, counting a delivery.
for _ = 1, (#claimed == 0 and 100 or 0) do
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1)
  if #due == 0 then break end
  local id = due[1]
  redis.call('ZREM', delayed, id)
  local parked = owned(key, group, parking, id)
  if parked then
    local entry = redis.call('XRANGE', key, id, id)
    if #entry == 0 then
      redis.call('XACK', key, group, id)
      gone = gone + 1
    else
      redis.call('XCLAIM', key, group, consumer, 0, id, 'RETRYCOUNT', parked + 1, 'JUSTID')
      claimed[1] = {id, entry[1][2], parked + 1}
      break
    end
  end
end

local next_cursor = scanned or '0-0'
if #claimed == 0 and scanned then
  -- The first idle entry that is not a delayed retry waiting for its due time
  -- (`target`), past what XAUTOCLAIM scanned, then from the start to the cursor; or
  -- where the listing stopped at its budget (`stop`).
  local target, stop, reparked, passes = nil, nil, 0, {}
  if scanned ~= '0-0' then passes[#passes + 1] = {scanned, '+'} end
  if cursor ~= '0-0' then passes[#passes + 1] = {'-', '(' .. cursor} end
  for _, pass in ipairs(passes) do
    local from, upto, size = pass[1], pass[2], 10
    repeat
      local page = checked(redis.pcall('XPENDING', key, group, 'IDLE', min_idle, from, upto,
                                       size), 'xpending') or {}
      local park = {}
      for _, p in ipairs(page) do
        local held = redis.call('ZSCORE', delayed, p[1])
        if held and tonumber(held) > now then
          park[#park + 1] = p[1]
        else
          target = p[1]
          break
        end
      end
      repark(park)
      reparked = reparked + #park
      if target or #page < size then break end
      from = '(' .. page[#page][1]
      if reparked >= """
    + str(REPARK_BUDGET)
    + r""" then stop = page[#page][1] end
      size = """
    + str(LOCATE_PAGE)
    + r"""
    until stop
    if target or stop then break end
  end
  next_cursor = stop or '0-0'
  if target then next_cursor = autoclaim(target) or '0-0' end
end
if gone > 0 then count_lost(lost, group, gone) end
return {next_cursor, claimed, next_due(scheduled, delayed, now)}
"""
)

# KEYS: stream.  ARGV: maxlen or '', minid or '', '~' or '=', the body field's name,
# then header, body, ...  Returns how many entries were added.
#
# All of a batch or none of it: the script runs alone, and a wrong key type fails
# the first XADD before anything is written. Trimming once after the batch leaves
# the stream as trimming on every XADD would; nobody sees the stream in between.
PUBLISH = r"""
local key, maxlen, minid, how, field = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local first = redis.pcall('XADD', key, '*', 'bk1', ARGV[5], field, ARGV[6])
if type(first) == 'table' and first.err then return first end
for i = 7, #ARGV, 2 do
  redis.call('XADD', key, '*', 'bk1', ARGV[i], field, ARGV[i + 1])
end
if maxlen ~= '' then redis.call('XTRIM', key, 'MAXLEN', how, maxlen) end
if minid ~= '' then redis.call('XTRIM', key, 'MINID', how, minid) end
return (#ARGV - 4) / 2
"""

# KEYS: stream, lost-counter hash, lease-length hash.
# ARGV: group, consumer, min idle ms, max deliveries, how many idle pending entries to
# list, where to list from ('-', or '(<id>' for after an id, as the last call said).
# The min idle time is raised to the group's lease length, as in FETCH.
# Returns {where the next call lists from, {{id, fields, deliveries}...}}: the
# entries idle past the visibility timeout that were already delivered
# max-deliveries times, now claimed by this consumer so that it dead-letters them
# (with the nack script). Should it crash first, they are idle again one visibility
# timeout later, and reaped again.
#
# Each call lists one page of idle entries; the next goes on after it, and after the
# last page ('-' returned) starts again from the beginning. So the whole pending
# entries list is looked at, page by page, however many idle entries still under
# max-deliveries come first (a crashed consumer's, delayed retries waiting).
REAP = (
    _CHECKS
    + r"""
local key, lost = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local min_idle = lease_length(KEYS[3], group, tonumber(ARGV[3]))
local limit, count, from = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] or '-'
local pending = checked(redis.pcall('XPENDING', key, group, 'IDLE', min_idle, from, '+', count),
                        'xpending')
if not pending then return {'-', {}} end
local out, gone = {}, 0
for _, p in ipairs(pending) do
  if p[4] >= limit then
    local id = p[1]
    redis.call('XCLAIM', key, group, consumer, 0, id, 'JUSTID')
    local entry = redis.call('XRANGE', key, id, id)
    if #entry == 0 then
      redis.call('XACK', key, group, id)
      gone = gone + 1
    else
      out[#out + 1] = {id, entry[1][2], p[4]}
    end
  end
end
if gone > 0 then count_lost(lost, group, gone) end
local next = '-'
if #pending >= count then next = '(' .. pending[#pending][1] end
return {next, out}
"""
)

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

# KEYS: stream, lost-counter hash.  ARGV: group, consumer, idle ms to set, the lowest
# id, the highest id, then the ids.  Returns the ids that were not pending for this
# consumer (stale), and those gone.
#
# One XPENDING over [lowest, highest], this consumer's entries only, finds what it
# holds, and one XCLAIM (of up to 1,000 ids) renews them all: two commands a call,
# where one XPENDING and one XCLAIM an id cost about 10 us of server time each
# (Redis 7.0). An id the range does not list is stale, unless the range was cut at
# its limit (the consumer holds many more entries between the bounds than the call
# names): then it is looked up alone.
#
# An entry that is gone (trimmed or XDELed while this consumer holds it) is one the
# XCLAIM does not claim: Redis 7 drops it from the pending entries list. It can never
# be delivered again: it is counted in the lost hash, as FETCH counts what it finds
# gone, and reported with the stale (its ack then finds it stale). Telling it so
# copies no entry into Lua: an XRANGE of each id, or an XINFO STREAM, would copy
# bodies (200 held entries of 100 KB: 25 ms a call with an XRANGE each).
RENEW = (
    _HELPERS
    + r"""
local key, group, consumer, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local n = #ARGV
local limit = 2 * (n - 5) + 100
local range = checked(redis.pcall('XPENDING', key, group, ARGV[4], ARGV[5], limit, consumer),
                      'xpending') or {}
local cut = #range >= limit
local mine = {}
for i = 1, #range do mine[range[i][1]] = true end
local stale, held = {}, {}
for i = 6, n do
  local id = ARGV[i]
  if mine[id] or (cut and owned(key, group, consumer, id)) then
    held[#held + 1] = id
  else
    stale[#stale + 1] = id
  end
end
local gone = 0
for i = 1, #held, 1000 do
  local last = math.min(i + 999, #held)
  local claim = {'XCLAIM', key, group, consumer, 0}
  for j = i, last do claim[#claim + 1] = held[j] end
  claim[#claim + 1], claim[#claim + 2], claim[#claim + 3] = 'IDLE', idle, 'JUSTID'
  local claimed = redis.call(unpack(claim))
  if #claimed < last - i + 1 then
    local got = {}
    for _, id in ipairs(claimed) do got[id] = true end
    for j = i, last do
      if not got[held[j]] then
        stale[#stale + 1] = held[j]
        gone = gone + 1
      end
    end
  end
end
if gone > 0 then count_lost(KEYS[2], group, gone) end
return stale
"""
)


def pairs(flat: Sequence[Any]) -> dict[bytes, bytes]:
    """A flat ``[field, value, ...]`` reply as a dict."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def text(value: bytes | str) -> str:
    """A reply value as str."""
    return value.decode() if isinstance(value, bytes) else value
