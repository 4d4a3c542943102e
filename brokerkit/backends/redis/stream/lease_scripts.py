"""The Lua scripts of redis+stream that take and keep leases (their text: registered
and run by :mod:`.calls_async`): :data:`FETCH` claims what came back (an entry whose
lease ran out, a requeued one, a delayed retry that is due), :data:`REAP` claims the
entries delivered max-deliveries times so that they are dead-lettered, and
:data:`RENEW` extends the leases a consumer holds. The checks they share with the
messaging scripts are in :mod:`.scripts`."""

from __future__ import annotations

from brokerkit.backends.redis.stream.scheduling import DUE_HELPERS
from brokerkit.backends.redis.stream.scripts import _CHECKS, _HELPERS

__all__ = ["FETCH", "LOCATE_PAGE", "REAP", "RENEW", "REPARK_BUDGET"]

#: FETCH lists idle pending entries this many at a time (the first page: ten).
LOCATE_PAGE = 100

#: A FETCH call parks again at most about this many idle delayed retries, then stops
#: and says where to go on (its caller claims again at once).
REPARK_BUDGET = 300

# KEYS: stream, lost-counter hash, lease-length hash, the topic's scheduled ZSET, the
# group's delayed ZSET (see .scheduling), the group's wake stream (see NACK).
# ARGV: group, consumer, min idle ms, claim cursor, count (unused: one entry comes
# back at most), group start id, the body field, maxlen or '', max age ms or '', '~' or
# '=', the parking consumer, max deliveries (0: no limit), then the ids of wake
# entries this consumer read, which are acked.
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
local start, parking, limit = ARGV[6], ARGV[11], tonumber(ARGV[12])
local claimed, gone = {}, 0
local now = now_ms()
-- The delivery counter a claim sets: one more, except for a claim past the limit,
-- which is dead-lettered, not delivered. Should its consumer die before the dead
-- letter is written, the entry is reclaimed later with its count still that of the
-- deliveries made, and the dead letter says so (x-deliveries).
local function counted(deliveries)
  if limit > 0 and deliveries > limit then return deliveries - 1 end
  return deliveries
end
for i = 13, #ARGV, 1000 do  -- a wake stream's group may be gone: nothing to ack then
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
        redis.call('XCLAIM', key, group, consumer, 0, id, 'RETRYCOUNT', counted(deliveries),
                   'JUSTID')
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
      redis.call('XCLAIM', key, group, consumer, 0, id, 'RETRYCOUNT', counted(parked + 1),
                 'JUSTID')
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

# KEYS: stream, lost-counter hash, lease-length hash.  ARGV: group, consumer, idle ms
# to set (0: the whole lease), or minus the ms the lease is to last from now (extend),
# the lowest id, the highest id, then the ids.  Returns the ids that were not pending
# for this consumer (stale), and those gone.
#
# An extend's idle time is the group's lease length as the hash holds it now, less the
# time asked for: claims wait at least that long, whatever length the group had when
# this member joined (an operator may have lowered it since). With no usable length
# there, the whole lease is renewed (idle 0): longer than asked, never shorter.
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
local key, group, consumer, idle = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
if idle < 0 then
  local raw = bookkeeping(redis.pcall('HGET', KEYS[3], group), KEYS[3],
                          'the lease length of each group', 'hget')
  local lease = raw and tonumber(raw)
  if lease and lease == lease and lease >= 0 and lease ~= math.huge then
    idle = math.max(0, math.floor(lease + idle))
  else
    idle = 0
  end
end
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
