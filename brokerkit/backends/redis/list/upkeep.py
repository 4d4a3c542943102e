"""The Lua scripts that look after a redis+list topic as a whole: the rescue of
deliveries whose lease ran out or whose consumer died, the look that ``inspect`` takes
(:mod:`.looks`) and the purge (see :mod:`.scripts` for the keys, the arguments every
script shares and the data model). Two parts of RESCUE's text live apart: its check
before it writes (:mod:`.upkeep_check`) and its unfolding of an oversized lease group
(:mod:`.upkeep_unfold`)."""

from __future__ import annotations

from brokerkit.backends.redis.list.looks import INSPECT
from brokerkit.backends.redis.list.preamble import with_preamble
from brokerkit.backends.redis.list.upkeep_check import WOULD_DEAD_LETTER
from brokerkit.backends.redis.list.upkeep_unfold import UNFOLD

__all__ = ["BATCH_COST", "INSPECT", "PURGE", "RESCUE"]


#: ARGV[7] at most this many dead consumers and held messages per call;
#: ARGV[8] a live consumer whose orphans to hand back too ("" : none); ARGV[9] at
#: most this many leases looked at per call (a group or a dead consumer's leases
#: past it are left for the next call: a due group is split, a dead consumer stays
#: registered as dead until its batches and lease hash are gone); ARGV[10] the server
#: ms the caller read the due lease groups at ("": now): the call takes the latest
#: ARGV[9] groups due by then, newest first, each costing at least one of the budget,
#: so that over the calls the oldest end up next out (a group due later is left for the
#: next call, as one not declared is); ARGV[11] n and ARGV[12 .. 11 + 2n] n pairs
#: {dead consumer, nonce}: the batches of dead consumers the call may look at, their
#: keys declared (a bounded part, see batches_of); then, from ARGV[A] (A = 12 + 2n):
#: ARGV[A] a consumer whose lease hash the caller read,
#: being too big for a script to read (see unfold), ARGV[A + 1] a lease group of its to
#: unfold or "", ARGV[A + 2] the index that group is cut at, and ARGV[A + 3...] the
#: names of the fields to look at (none of these: the call reads no hash of more than
#: UNFOLD_READ fields, and names the first such consumer in its reply); or ARGV[A + 1]
#: "orphans", ARGV[A + 2...] what the caller matched of ARGV[A]'s processing list (see
#: orphans in the preamble: a consumer whose list cannot be matched here is named in
#: the reply with "orphans", a dead one left alone meanwhile).
#: Also moves held messages that are due to the queue.
#: Returns {deliveries handed back, ms until the next lease group or held message is
#: due or -1 (0 when work was left for the next call), orphans, lease groups visited
#: (``limit`` when more may be due), held messages moved to the queue, ms until the next
#: held message is due or -1, the dead consumers left alone because they hold batches
#: of which none was declared, and {consumer, lease group or "" or "orphans"} of a
#: lease hash for the caller to read, or nil}.
#: What a batch visited costs a rescue call's budget (ARGV[9]) besides its deliveries:
#: a batch's own commands (its flags and expiry value read, its list, fetches field,
#: expiry value and lease group deleted or rewritten) are about twice a delivery's (its
#: element read and pushed back, its count), so that a call's work is bounded by its
#: commands whatever the batches hold: 100 deliveries of one batch, or 34 batches of
#: one (fetched with prefetch 1), about 300 to 400 commands, where 100 batches of one
#: took 900 (1.7-2.9 ms of server time on a quiet machine, 5-7 on a slow hour).
BATCH_COST = 2

RESCUE = with_preamble(
    r"""
local t = now_ms()
local limit, budget = tonumber(ARGV[7]), tonumber(ARGV[9])
local BATCH_COST = """
    + str(BATCH_COST)
    + r"""
local moved, more = 0, false
-- ARGV[11] n, then n {consumer, nonce} (see batches_of); what the caller read follows
local PAIRS = math.max(math.floor(tonumber(ARGV[11] or '') or 0), 0)
local AT = 12 + 2 * PAIRS
local GIVEN_OF, GIVEN_GROUP = ARGV[AT] or '', ARGV[AT + 1] or ''
-- (what the caller gives is read one argument at a time: an unpack of them all fails
-- past about 8,000, LUAI_MAXCSTACK, as a dead consumer's orphans' indexes may be)
local function args_from(first)
  local got = {}
  for i = first, #ARGV do got[#got + 1] = ARGV[i] end
  return got
end
local GIVEN_CUT, GIVEN = tonumber(ARGV[AT + 2] or ''), args_from(AT + 3)
-- or GIVEN_GROUP 'orphans': the orphans of consumer GIVEN_OF (see orphans), ARGV[AT + 2...]
local GIVEN_ORPHANS = GIVEN_GROUP == 'orphans' and args_from(AT + 2) or nil
local function given_orphans(C)
  if GIVEN_OF == C then return GIVEN_ORPHANS end
  return nil
end
local UNREAD = false  -- {C, group}: the first lease hash too big to read here
-- The latest `budget` lease groups due when the caller read them (ARGV[10]), latest
-- first: a call takes no more (each costs at least one), the oldest next out at the end
local WINDOW = math.max(budget, 0)
local bound = math.min(tonumber(ARGV[10] or '') or t, t)
local scored = redis.call('ZRANGE', DEADLINES, bound, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, WINDOW,
  'WITHSCORES')
local due, scores = {}, {}
for i = 1, #scored, 2 do
  due[#due + 1], scores[#scores + 1] = scored[i], scored[i + 1]
end
-- whether the caller declared the keys of lease group g (one that fell due after the
-- caller looked is left for the next rescue)
local function known_group(g)
  local colon = string.find(g, ':', 1, true)
  local dash = string.find(g, '-', 1, true)
  return not colon or (declared(string.sub(g, colon + 1)) and (not dash or dash > colon
      or DECLARED[BATCH_PREFIX .. string.sub(g, 1, dash) .. string.sub(g, colon)]))
end
-- The nonces of dead consumer C's batches this call may look at: those the caller
-- declared for it (ARGV[12...], a pair a batch: a bounded part of them, the newest
-- first, so that the oldest are handed back last), none when it holds no batch, or nil
-- when it holds some of which none is declared (the caller did not know it dead: it is
-- named in the reply, for the caller to declare a part in a call of its own), or it is
-- not declared at all. No call lists a fetches hash: what is left is counted (HLEN).
-- Decided once a call: would_dead_letter and the hand-back walk the same nonces.
local GIVEN_BATCHES, BATCHES, PAIRED = {}, {}, {}
for i = 12, AT - 2, 2 do
  local C, nonce = ARGV[i], ARGV[i + 1]
  local batch = BATCH_PREFIX .. nonce .. ':' .. C
  if DECLARED[batch] and not PAIRED[batch] then  -- a batch given twice is walked once
    PAIRED[batch] = true
    GIVEN_BATCHES[C] = GIVEN_BATCHES[C] or {}
    table.insert(GIVEN_BATCHES[C], nonce)
  end
end
-- (A consumer holding no more batches than a call's budget, each named by a lease
-- group the caller declared, as a consumer fed big fetches does, is listed here, so that
-- one call hands them back: no more than the budget of fields read.)
local function batches_of(C)
  if not declared(C) then return nil end
  if BATCHES[C] == nil then
    local given, held = GIVEN_BATCHES[C], 0
    if not given then held = redis.call('HLEN', fetches_of(C)) end
    if held > 0 and held <= tonumber(ARGV[9]) then
      given = redis.call('HKEYS', fetches_of(C))
      for _, nonce in ipairs(given) do
        if not DECLARED[BATCH_PREFIX .. nonce .. ':' .. C] then given = false; break end
      end
    end
    BATCHES[C] = given or held == 0 and {} or false
  end
  return BATCHES[C] or nil
end
-- How many receipts of a known lease group g may name a lease: none past the end of
-- the batch it names, and none when there is no batch and its consumer holds no lease
-- an earlier version recorded (another program's group may claim 10^14 receipts, or
-- none); 1 for a member that is no group (see group_parts).
local function group_size(g)
  local nonce, first, n, tail = group_parts(g)
  if not nonce then return 1 end
  local C = string.sub(tail, 2)
  local flags = flags_of(C, nonce)
  if flags then return math.max(math.min(n, #flags - first), 0) end
  if redis.call('HLEN', leases_of(C)) == 0 then return 0 end
  return n
end"""
    + UNFOLD
    + r"""
local dead = redis.call('ZRANGEBYSCORE', CONSUMERS, '-inf', t, 'LIMIT', 0, limit)
-- At most `most` of the leases an earlier version recorded in dead consumer C's lease
-- hash: their fields and records. The hash's names are read here while it holds at most
-- UNFOLD_READ (see unfold), else given by the caller (ARGV[A + 3...]); none when neither,
-- the reply naming C for the caller to read them; listed once a call, as batches are.
local LEASE_NAMES = {}
local function recorded_leases(C, most)
  local leases, names = leases_of(C), GIVEN
  if GIVEN_OF ~= C or GIVEN_GROUP ~= '' then
    if LEASE_NAMES[C] == nil then
      LEASE_NAMES[C] = redis.call('HLEN', leases) <= UNFOLD_READ and redis.call('HKEYS', leases)
    end
    names = LEASE_NAMES[C]
    if not names then
      UNREAD = UNREAD or {C, ''}
      return {}, {}
    end
  end
  local fields = {unpack(names, 1, math.max(math.min(most, #names), 0))}
  local values = #fields > 0 and redis.call('HMGET', leases, unpack(fields)) or {}
  local kept, records = {}, {}
  for j, f in ipairs(fields) do
    if values[j] then kept[#kept + 1], records[#records + 1] = f, values[j] end
  end
  return kept, records
end
-- The flags and expiry values of the batches {C, nonce} of `named` not read yet this
-- call, read together: an HMGET of each consumer's fetches hash and of EXPIRY (CHUNK
-- fields a command), not two HGETs a batch (see flags_of, batch_value)
local function read_batches(named)
  local consumers, nonces, names = {}, {}, {}
  for _, b in ipairs(named) do
    local C, nonce = b[1], b[2]
    local name = nonce .. ':' .. C
    if FLAGS[name] == nil and VALUES[name] == nil then
      if not nonces[C] then consumers[#consumers + 1], nonces[C] = C, {} end
      table.insert(nonces[C], nonce)
      names[#names + 1] = name
      FLAGS[name] = false  -- a batch named twice is read once (set below)
    end
  end
  for _, C in ipairs(consumers) do
    local flags = gather('HMGET', fetches_of(C), nonces[C], 1, #nonces[C])
    for j, nonce in ipairs(nonces[C]) do FLAGS[nonce .. ':' .. C] = flags[j] or false end
  end
  local values = gather('HMGET', EXPIRY, names, 1, #names)
  for j, name in ipairs(names) do VALUES[name] = values[j] or false end
end
-- The batches whose every lease the due groups handed back: their keys are freed
-- together after the walk (see free_gone), CHUNK a command, as set_flags would free
-- each with four commands; FLAGS says the batch is gone meanwhile.
local GONE_OF, GONE_FIELDS, GONE_NAMES, GONE_LISTS, GONE_GROUPS = {}, {}, {}, {}, {}
local function gone_batch(C, nonce, n)
  local name = nonce .. ':' .. C
  if not GONE_FIELDS[C] then GONE_OF[#GONE_OF + 1], GONE_FIELDS[C] = C, {} end
  table.insert(GONE_FIELDS[C], nonce)
  GONE_NAMES[#GONE_NAMES + 1] = name
  GONE_LISTS[#GONE_LISTS + 1] = need(BATCH_PREFIX .. name)
  GONE_GROUPS[#GONE_GROUPS + 1] = nonce .. '0+' .. n .. ':' .. C
  FLAGS[name] = false
end
local function free_gone()
  for _, C in ipairs(GONE_OF) do call_chunked('HDEL', fetches_of(C), GONE_FIELDS[C], 1) end
  call_chunked('HDEL', EXPIRY, GONE_NAMES, 1)
  for i = 1, #GONE_LISTS, CHUNK do
    redis.call('DEL', unpack(GONE_LISTS, i, math.min(i + CHUNK - 1, #GONE_LISTS)))
  end
  call_chunked('ZREM', DEADLINES, GONE_GROUPS, 1)
end
"""
    + WOULD_DEAD_LETTER
    + r"""
if MAX > 0 and not dead_letters_ok() and would_dead_letter() then return refuse_dead_letters() end
local wrote = false  -- whether this call wrote anything yet (see the backstop below)
if #due >= WINDOW then more = true end  -- a full window: more may be due
-- the batches the known due groups name, read together: those of the groups the
-- budget may reach, each charged as the walk charges it (a group claims `n` receipts,
-- a batch's BATCH_COST more: a batch of 1,000 is read alone, 34 batches of one a call)
local named, claimed = {}, 0
for i = 1, #due do
  if claimed >= budget then break end
  local nonce, C = batch_of(group_receipts(due[i], 0, 0)[1])
  local batch = nonce and known_group(due[i])
  if batch then named[#named + 1] = {C, nonce} end
  local _, _, n = group_parts(due[i])
  claimed = claimed + math.max(n or 1, 1) + (batch and BATCH_COST or 0)
end
read_batches(named)
for i = 1, #due do  -- latest first: the earliest ends up next out
  if budget <= 0 then more = true; break end
  local known = known_group(due[i])
  wrote = wrote or known
  local unfolded = known and unfold(due[i], scores[i], budget)
  if unfolded then
    more = true
    budget = budget - math.max(unfolded, 1)
  elseif known then
  local group = due[i]
  local size, skip = group_size(group), 0
  -- a group of a batch costs BATCH_COST more than its receipts (see BATCH_COST)
  local first_nonce, first_of = batch_of(group_receipts(group, 0, 0)[1])
  local extra = first_nonce and flags_of(first_of, first_nonce) and BATCH_COST or 0
  -- a group that fits in what is left is taken whole (the budget may go below 0, ending
  -- the call: a batch of RESCUE_LEASES goes back in one call); a bigger one is split,
  -- its latest receipts what is left less BATCH_COST
  local room = size <= budget and size or math.max(budget - extra, 1)
  if size > room then
    -- Look at the group's latest `room` receipts now; the earlier ones stay a
    -- group of their own, with the score the whole group had (still a lower bound).
    local head, rest = split_group(group, size - room)
    if head then
      redis.call('ZADD', DEADLINES, scores[i], head)
      redis.call('ZREM', DEADLINES, group)
      group = rest
      more = true
      skip = size - room
    end
  end
  local receipts, from = group_receipts(due[i], skip, size - 1), 1
  -- a group costs one, naming no lease too; a batch's, BATCH_COST more
  budget = budget - math.max(#receipts, 1) - extra
  local earliest, removed
  -- a group is one batch's (or an earlier version's): its flags are read once, and
  -- what expired is handed back with one write of them (a group naming no lease, none)
  local nonce, C
  if receipts[from] then nonce, C = batch_of(receipts[from]) end
  local flags = nonce and flags_of(C, nonce)
  if flags then
    local name = nonce .. ':' .. C
    local list, shared = need(BATCH_PREFIX .. name), deadline_of(batch_value(name))
    local marks, back = {}, {}
    for j = #receipts, from, -1 do  -- latest first: the earliest ends up next out
      local _, _, i = batch_of(receipts[j])
      local flag = i and string.sub(flags, i + 1, i + 1)
      local deadline = shared
      if flag == '2' then deadline = deadline_of(redis.call('HGET', EXPIRY, receipts[j])) end
      if flag ~= '0' and flag ~= '2' then
        -- settled
      elseif deadline and deadline > t then
        if not earliest or deadline < earliest then earliest = deadline end
      elseif not marks[i] then  -- expired, or a value that is garbage or gone
        if flag == '2' then redis.call('HDEL', EXPIRY, receipts[j]) end
        marks[i] = '1'
        back[#back + 1] = i
      end
    end
    for _, i in ipairs(back) do
      local e = redis.call('LINDEX', list, i)
      if e then
        hand_back(e, true, 'max_deliveries')
        moved = moved + 1
      end
    end
    local _, leased = string.gsub(flags, '[02]', '')
    if #back > 0 and #back >= leased then
      gone_batch(C, nonce, #flags)  -- freed after the walk, its group with it
    elseif #back > 0 then
      set_flags(C, nonce, marks, #back)
    end
    -- the batch gone, its group is taken out with it
    removed = FLAGS[name] == false and group == nonce .. '0+' .. #flags .. ':' .. C
  else
    for j = #receipts, from, -1 do
      local v, kind = lease_of(receipts[j])
      local deadline = deadline_of(v)
      if kind == 'settled' or (kind == 'record' and not deadline) then
        -- not leased (an earlier version's record without a value is left to its owner)
      elseif deadline and deadline > t then
        if not earliest or deadline < earliest then earliest = deadline end
      else
        local e = release(receipts[j])
        if e then
          hand_back(e, true, 'max_deliveries')
          moved = moved + 1
        end
      end
    end
  end
  if earliest then
    redis.call('ZADD', DEADLINES, earliest, group)
  elseif not removed then
    redis.call('ZREM', DEADLINES, group)
  end
  end
end
free_gone()
-- a receipt orders deliveries by time, then by batch (one fetch's nonces sort in the
-- order of its batches: see new_nonces), then by index (a longer one is later)
local function later(a, b)
  if a[1] ~= b[1] then return a[1] > b[1] end
  local x, y = a[2], b[2]
  local nx = string.sub(x, 1, string.find(x, '-', 1, true) or 0)
  local ny = string.sub(y, 1, string.find(y, '-', 1, true) or 0)
  if nx ~= ny then return nx > ny end
  if #x ~= #y then return #x > #y end
  return x > y
end
local unknown = {}
for _, C in ipairs(dead) do
  if budget <= 0 then more = true; break end
  -- a consumer that died after the caller looked is left for the next rescue; one
  -- whose batches the caller did not know of (it did not know it dead) is named in
  -- the reply, for the caller to declare some in a call of its own
  local nonces = batches_of(C)
  local known = nonces ~= nil
  if declared(C) and not known then
    unknown[#unknown + 1] = C
    more = true
  end
  local found = known and orphans(C, given_orphans(C))
  if known and not found then  -- its processing list is left for the caller to match
    UNREAD = UNREAD or {C, 'orphans'}
    known, more = false, true
  end
  local stop = false
  if known then
  local proc, leases, fetches = proc_of(C), leases_of(C), fetches_of(C)
  local held, tail, left, cuts = {}, ':' .. C, false, {}
  -- its declared batches, a budget's worth at a time from the end of each, to be cut
  -- off the batch: every delivery with an expiry value, and any element left without
  -- one by an earlier version's rescuer (a settled one is blank); a batch a due group
  -- took the last delivery of is gone
  for _, nonce in ipairs(nonces) do
    if budget <= 0 then break end
    local name = nonce .. tail
    local batch, flags = BATCH_PREFIX .. name, flags_of(C, nonce)
    if flags then
      local size = redis.call('LLEN', batch)
      -- whole when it fits in what is left (see the due groups), else its latest part
      local from = size <= budget and 0 or math.max(size - math.max(budget - BATCH_COST, 1), 0)
      local elements = size > 0 and redis.call('LRANGE', batch, from, -1) or {}
      local delivered = delivered_of(batch_value(name)) or 0
      for i, e in ipairs(elements) do
        local index = from + i - 1
        local flag = string.sub(flags, index + 1, index + 1)
        if flag == '0' or flag == '2' then
          held[#held + 1] = {delivered, nonce .. index .. tail, e, flag == '2'}
        end
      end
      budget = budget - #elements - BATCH_COST  -- a batch costs BATCH_COST more
      cuts[#cuts + 1] = {nonce, from}
    end
  end
  -- and the leases earlier versions recorded in its lease hash
  local fields, values = recorded_leases(C, budget)
  local receipts = {}
  for j, f in ipairs(fields) do receipts[j] = receipt_of(f, C) end
  local expiry = gather('HMGET', EXPIRY, receipts, 1, #receipts)
  for j, r in ipairs(receipts) do
    local delivered, e = record_of(fields[j], values[j], expiry[j])
    held[#held + 1] = {delivered, r, e}
  end
  budget = budget - #receipts
  -- a backstop to would_dead_letter: nothing of C is written when one of these would
  -- be dead-lettered where it cannot be; the call refuses if it wrote nothing yet, else
  -- the next call's check sees it first, refusing
  if MAX > 0 and not dead_letters_ok() then
    for _, lease in ipairs(held) do
      if dies(lease[3], true) then stop = true; break end
    end
    if stop and not wrote then return refuse_dead_letters() end
  end
  if not stop then
  wrote = true
  give_back_lent(C)
  -- moved but never leased: never handed to the application, no attempt
  for _, e in ipairs(found) do
    redis.call('RPUSH', QUEUE, e)
    count_returned(1)  -- goes out alone, as one that came back does
    moved = moved + 1
  end
  redis.call('DEL', proc)
  for _, lease in ipairs(held) do
    if lease[4] then redis.call('HDEL', EXPIRY, lease[2]) end
  end
  -- the batches gone, freed together (CHUNK keys or fields a command): their lists,
  -- fetches fields, expiry values and lease groups (left, the last tidy() DELs them)
  local groups, lists, nonces_gone, names = {}, {}, {}, {}
  for _, cut in ipairs(cuts) do
    local nonce, from = cut[1], cut[2]
    local name = nonce .. tail
    local batch, flags = BATCH_PREFIX .. name, flags_of(C, nonce)
    local kept = string.sub(flags, 1, from)
    if string.find(kept, '[02]') then
      redis.call('LTRIM', batch, 0, from - 1)
      redis.call('HSET', fetches, nonce, kept)
      FLAGS[name] = kept
      left = true
    else
      lists[#lists + 1], nonces_gone[#nonces_gone + 1], names[#names + 1] = batch, nonce, name
      FLAGS[name] = false
      groups[#groups + 1] = nonce .. '0+' .. #flags .. tail
    end
  end
  for i = 1, #lists, CHUNK do
    redis.call('DEL', unpack(lists, i, math.min(i + CHUNK - 1, #lists)))
  end
  call_chunked('HDEL', fetches, nonces_gone, 1)
  call_chunked('HDEL', EXPIRY, names, 1)
  call_chunked('ZREM', DEADLINES, groups, 1)
  call_chunked('HDEL', EXPIRY, receipts, 1)
  call_chunked('HDEL', leases, fields, 1)
  -- registered while anything of it is left: a batch not declared or cut, a lease
  if redis.call('HLEN', fetches) > 0 or redis.call('HLEN', leases) > 0 then left = true end
  if left then more = true else redis.call('ZREM', CONSUMERS, C) end
  table.sort(held, later)
  for _, lease in ipairs(held) do  -- newest first: the oldest ends up next out
    hand_back(lease[3], true, 'max_deliveries')
    moved = moved + 1
  end
  end
  end
  if stop then more = true; break end
end
local reconciled = 0
if ARGV[8] ~= '' then
  give_back_lent(ARGV[8])
  local found = orphans(ARGV[8], given_orphans(ARGV[8]))
  if not found then UNREAD = UNREAD or {ARGV[8], 'orphans'} end
  for _, e in ipairs(found or {}) do
    redis.call('LREM', proc_of(ARGV[8]), 1, e)
    redis.call('RPUSH', QUEUE, e)
    count_returned(1)
    reconciled = reconciled + 1
  end
end
tidy()
local released = release_due(t, limit)
local held_wait = next_due_wait(t)
local wait = held_wait
local next_lease = redis.call('ZRANGE', DEADLINES, 0, 0, 'WITHSCORES')
if next_lease[2] then
  local lease_wait = math.max(tonumber(next_lease[2]) - t, 0)
  if wait < 0 or lease_wait < wait then wait = lease_wait end
end
if more then wait = 0 end
if UNREAD then more, wait = true, 0 end
return {moved, wait, reconciled, more and limit or #due, released, held_wait, unknown, UNREAD}
"""
)

#: KEYS[1] queue, [2] scheduled, [3] returned, [4] attempts (no preamble). Deletes
#: them and returns how many messages waited and were held; a key of another type is
#: refused (WRONGTYPE) before anything is deleted. (A transaction would not do: Redis
#: runs the rest of a MULTI after a command's WRONGTYPE.)
PURGE = r"""
local expected = {'list', 'zset', 'string', 'hash'}
for i, want in ipairs(expected) do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'none' and kind ~= want then
    return redis.error_reply('WRONGTYPE brokerkit: the key ' .. KEYS[i] .. ' holds a ' .. kind
      .. ', not a ' .. want .. '; nothing was purged')
  end
end
local n = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
redis.call('DEL', unpack(KEYS))
return n
"""
