"""The Lua scripts that manage a redis+stream group rather than move its messages:
a member joining (the group's lease length), purging a topic, counting what follows
an id, removing idle members (their text: registered and run by :mod:`.calls_async`).
The checks they share with the messaging scripts are in :mod:`.scripts`."""

from __future__ import annotations

from brokerkit.backends.redis.stream.scripts import _CHECKS

__all__ = ["COUNT_AFTER", "JOIN", "PURGE", "REMOVE_IDLE"]

# KEYS: lease-length hash.  ARGV: group, this member's lease length in ms.
# Raises the group's lease length to this member's; returns the group's.
JOIN = (
    _CHECKS
    + r"""
local mine = tonumber(ARGV[2])
local held = lease_length(KEYS[1], ARGV[1], 0)
if mine > held then
  redis.call('HSET', KEYS[1], ARGV[1], mine)
  return mine
end
return held
"""
)

# KEYS: stream, the topic's scheduled ZSET.  Returns how many entries were removed.
# Drops every entry that no group holds, and the delayed publishes, and moves every
# group past the end, so nothing waits any more while handed-out deliveries (and
# delayed retries, pending in their group) can still be settled.
PURGE = r"""
local key = KEYS[1]
local scheduled = redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', key) == 0 then return scheduled end
local held = {}
local any = false
for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local name, pending
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'pending' then pending = g[i + 1] end
  end
  if pending > 0 then
    for _, p in ipairs(redis.call('XPENDING', key, name, '-', '+', pending)) do
      held[p[1]] = true
      any = true
    end
  end
  redis.call('XGROUP', 'SETID', key, name, '$')
end
if not any then return scheduled + redis.call('XTRIM', key, 'MAXLEN', 0) end
local removed, from = scheduled, '-'
while true do
  local batch = redis.call('XRANGE', key, from, '+', 'COUNT', 500)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    if not held[e[1]] then
      removed = removed + redis.call('XDEL', key, e[1])
    end
  end
  from = '(' .. batch[#batch][1]
end
return removed
"""

# KEYS: stream.  ARGV: after id, limit.  Returns how many entries come after it,
# counting no further than the limit (the entries are read, bodies and all, 100 at a
# time: a count without a limit held Redis for as long as the stream is long).
COUNT_AFTER = r"""
local n, from, limit = 0, '(' .. ARGV[1], tonumber(ARGV[2])
while n < limit do
  local want = math.min(100, limit - n)
  local batch = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', want)
  n = n + #batch
  if #batch < want then return n end
  from = '(' .. batch[#batch][1]
end
return n
"""

# KEYS: stream, the group's wake stream.  ARGV: group, idle ms, one consumer's name
# (or '' for any).
# Deletes the group's consumers idle that long or longer which hold nothing, and
# returns their names. A consumer that still holds entries is kept: XGROUP
# DELCONSUMER would drop its pending entries, and they would never be redelivered.
# A removed consumer leaves the wake stream's group too (what it holds there wakes
# nobody any more).
REMOVE_IDLE = (
    _CHECKS
    + r"""
local key, group, idle, only = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local removed = {}
local consumers = redis.pcall('XINFO', 'CONSUMERS', key, group)
local err = type(consumers) == 'table' and consumers.err
if err and string.sub(err, 1, 9) == 'WRONGTYPE' then
  return consumers  -- the error itself: the caller names the topic
end
consumers = checked(consumers, 'xinfo')
if not consumers then return removed end
for _, c in ipairs(consumers) do
  local name, pending, cidle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] end
    if c[i] == 'pending' then pending = c[i + 1] end
    if c[i] == 'idle' then cidle = c[i + 1] end
  end
  if pending == 0 and cidle >= idle and (only == '' or only == name) then
    redis.call('XGROUP', 'DELCONSUMER', key, group, name)
    redis.pcall('XGROUP', 'DELCONSUMER', KEYS[2], group, name)
    removed[#removed + 1] = name
  end
end
return removed
"""
)

# KEYS: stream.  ARGV: max age ms, '~' or '='.  Returns how many entries XTRIM removed.
# Drops the entries older than the age, counted back from the server's clock (TIME),
# which gave the entries their ids: the caller's clock may be off by any amount.
TRIM_AGE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local minid = string.format('%d', math.max(0, now - tonumber(ARGV[1])))
return redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2], minid)
"""
