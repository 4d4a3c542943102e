"""The Lua scripts of the redis+list backend: every step that touches more than one
key runs as one atomic script, judged by the server's clock (``TIME``).

Every script takes the same first keys and arguments (see :data:`PREAMBLE`)::

    KEYS[1] queue       the list producers LPUSH to and consumers take from the right
    KEYS[2] deadlines   ZSET lease group -> the earliest deadline it may hold (server ms)
    KEYS[3] consumers   ZSET consumer -> heartbeat deadline (server ms)
    KEYS[4] dead letters, the queue of the dead-letter topic
    KEYS[5] expiry      HASH batch or receipt -> "<lease deadline>.<delivered>" (server ms)
    KEYS[6] attempts    HASH SHA-1 of a raw element -> its deliveries so far
    KEYS[7] scheduled   ZSET held message -> due time (server ms)
    KEYS[8] returned    STRING how many elements at the queue's head came back
    KEYS[9...] the processing list, lease hash and fetches hash of each consumer the
                call may touch, and the batch lists of the receipts it names (see
                :meth:`.TopicPlan.keys_for`): no script touches a key it was not
                given, so every key is declared, as Redis Cluster wants
    ARGV[1] prefix of processing lists    (+ consumer)
    ARGV[2] prefix of lease hashes        (+ consumer); the fetches hashes and the
            batch lists are named like them, "fetches:" and "batch:" for "leases:"
    ARGV[3] max_deliveries (0: no limit)
    ARGV[4] topic name (for dead-letter headers)
    ARGV[5] content type of dead-lettered raw elements ("" : guess JSON or bytes)
    ARGV[6] heartbeat ttl in ms

The per-consumer keys carry the topic's hash tag, so they live in the cluster slot of
the fixed keys; a script uses one only when the caller declared it in ``KEYS`` (a
fetch, settle or extend declares the consumers and batches its receipts name; a rescue
or inspect first reads which consumers and lease groups there are, and leaves one that
appeared meanwhile for its next run).

**Batches.** A fetch leases what it takes as one *batch*: its elements move from the
queue to a list of their own, ``batch:<nonce>:<consumer>``, next-out first, inside
Redis (``SORT ... BY nosort ... STORE`` and ``LTRIM``): no body enters Lua, where
every element a script reads is copied. The client reads the list in the same round
trip (``LRANGE``). A receipt is ``<nonce><i>:<consumer>``: the batch's nonce (fresh
for every fetch, see :func:`.plan.new_nonces`) and the delivery's index in it, so a
receipt names its batch. The batch has one lease: ``expiry`` holds
``<nonce>:<consumer>`` -> ``<deadline>.<delivered>``, and the consumer's fetches hash
holds ``<nonce>`` -> one flag a delivery: ``0`` leased under the batch's value, ``2``
under a value of its own in ``expiry`` under its receipt (extended by hand), ``1``
settled (its element blanked in the list, its memory freed). The batch's keys go with
its last leased delivery. So a message in flight costs what it cost waiting, plus a
byte; a renewal rewrites one value a batch. A consumer's processing list only holds
what a ``BLMOVE`` moved and no lease covers yet: the fetch moves it into its batch.
A fetch of big elements leases a batch an about ``CHUNK_BYTES`` (256 KiB, of the
nonces the client sent for it: see :func:`.plan.batches_for`): ``SORT`` copies all it
moves before it stores any, and a megabyte at once fell out of the CPU's cache (at
10 KB a message, 100 in one move cost Redis 1.3-1.4x what 100 ``LMOVE``s cost, 25 at
a time about as much).

A lease recorded by an earlier version (before batches) is kept per delivery: its
element in the consumer's lease hash under the receipt without its ``:<consumer>``
(or as ``<delivered ms>:<element>`` under the whole receipt, with an expiry value of
only ``<deadline>``), its value in ``expiry`` under its receipt; the scripts settle,
renew and hand back those too (``lease_of`` and ``release`` in the preamble).

``deadlines`` indexes the leases for rescuers by *lease group*: a fetch of ``n``
deliveries adds one member ``<nonce>0+<n>:<consumer>`` (naming the receipts
``<nonce>0`` ... ``<nonce><n - 1>``), and shortening one lease by hand adds the receipt
itself as a group of one. A group's score is never later than the deadline of any live
lease in it; a rescuer visiting a group hands back what has expired and re-scores it to
its earliest live deadline, or removes it. So a fetch or an ack costs one ``deadlines``
command however many deliveries it covers, and a renewal none.

An element handed back after a delivery is wrapped as ``BKR<n>\\n<element>``: the
message was delivered ``n`` times before. A fresh element has no wrapper. A fetch hands
such an element out alone (a batch stops before it), so that a message that crashes its
consumer cannot take the messages fetched with it to the dead-letter topic. Handed-back
elements (and due retries, and orphans a rescue puts back) go to the head of the queue
(the right), new ones to its tail, and ``returned`` counts the ones at the head: a fetch
reads no element to tell. Deliveries nobody saw (a closed subscription's buffer), handed
back to the head as they were, are not counted, so they go out in a batch again, unless
one of them came back before or a counted element waits beneath them. The count heals
itself when another program takes from the head (a fetch that takes one it counted
decrements it; an empty queue clears it); an element an earlier version handed back is
not counted. A raw element (no ``BK1`` envelope: another program wrote it, or
``raw=true`` did) goes back as it was, so that the program that reads the list can
still read it; its count is kept in the ``attempts`` hash under the element's SHA-1
(identical raw elements share one count), and a fetch reports it in its reply.

A message held for a due time (``publish(delay=)``, ``nack(delay=)``) waits in
``scheduled``, scored by its due time in server milliseconds, as
``S<position><message id>\n<element>`` (a delayed publish, its position in its batch
in 8 hex digits: see :func:`.schedule.hold_member`) or ``R<receipt>\n<element>`` (a
delayed retry, the element as a hand-back would requeue it: wrapped, or raw with its
count in ``attempts``); the tag keeps members unique. Once due, every script that
fetches or rescues moves it to the queue (:func:`release_due` in the preamble): a
publish to the tail, as LPUSH would, a retry to the head, as an immediate requeue
would, in due order.

Multi-member commands (``HSET``, ``HMGET``, ``HDEL``...) take at most
:data:`CHUNK` members per call, well under Lua's ``unpack`` limit.
"""

from __future__ import annotations

from brokerkit.backends.redis.list.plan import CHUNK_BYTES, FETCH_BYTES
from brokerkit.backends.redis.list.preamble import CHUNK, PREAMBLE, RELEASE_BATCH, with_preamble

__all__ = ["CHUNK", "FETCH", "PREAMBLE", "RELEASE_BATCH", "TRIM"]


#: ARGV[7] consumer, [8] how many, [9] lease ms, [10] the fetch's nonce (the receipts of
#: its batch are ``<nonce><i>:<consumer>``, ``i`` from 0, and its list is named after
#: it), [11] the mean size of the elements of the consumer's last fetch (0: none yet),
#: [12] (optional) "1": first lease the tail of the consumer's processing list, where
#: a BLMOVE sent just before this call, in the same pipeline, moved what it waited for
#: (or an element a lost reply left there: never delivered); such a wake-up call leaves
#: held messages that fell due to the consumer's next release (it blocked only after
#: one, and only until the next due time it knew of); "2": the same, the consumer
#: having handed that element out already as the first of the batch (see
#: :mod:`.woken_async`): when it is no longer there, nothing is leased, [13...]
#: (optional, [12] then given) the nonces of more batches it may lease (see
#: CHUNK_BYTES); or [12] "3": the consumer's LMOVEs that follow in the transaction,
#: [13] of them, move the elements (see *Moves* below); "4": "2" and "3" together, the
#: moves taking what waits behind the element handed out.
#: Returns {how many were leased, for a raw element that came back (then leased alone)
#: its deliveries so far or false, 1 when it took fewer than asked for although more
#: were waiting (big elements: about FETCH_BYTES a fetch) else 0}; the elements are in
#: the batch lists, in delivery order, the first nonce's first (the caller reads each
#: with LRANGE after the call, in the same pipeline; one the fetch did not need is
#: empty).
#:
#: A woken consumer reads its BLMOVE's reply, sends this script ("2") and hands the
#: element out before the reply comes (see :mod:`.woken_async`). With ``raw=true`` or a
#: BLMOVE that failed, the BLMOVE, this script ("1") and the read of the batch go in
#: one send: the server runs the script when it goes on with that pipeline, after the
#: BLMOVE returned (other clients' commands may run between the two: a consumer
#: fetches one at a time, so no other BLMOVE of its own). Between the BLMOVE and the
#: script the element has no lease; only a consumer whose heartbeat ran
#: out loses it to a rescuer then, and the script finds nothing there. On a cluster
#: (redis-py runs no script in a cluster's pipeline) each is a round trip, and the
#: script runs only when the BLMOVE moved something. The script runs even when the
#: BLMOVE fails (a user the ACL denies it): what it leased is handed out all the same,
#: never left to wait out its lease.
#:
#: *Moves.* From about :data:`.plan.MOVE_BYTES` an element, a ``SORT`` that stores a
#: copy costs Redis more than ``LMOVE``s of the same elements (at 10 KB, 1.6-1.8x a
#: pipeline of 100 ``LMOVE``; at 1 KB, less than it). So a consumer whose last fetch
#: was that big sends ``MULTI``, this script ("3", [13] the number of moves ``k``, about
#: FETCH_BYTES of elements), ``k`` times ``LMOVE <moving> <batch> RIGHT RIGHT``,
#: ``RENAMENX <moving> <queue>``, ``EXEC``, where ``<moving>`` is the consumer's
#: ``moving:`` key (KEYS, after the batch). The script leases the first ``k`` (or all
#: there are) under the batch and renames the queue to ``<moving>``: the moves take
#: them from it, their replies are the bodies, and the last command gives the queue its
#: name back, all in one transaction, so nobody sees the queue under the other name and
#: no body enters Lua. When the script leases otherwise (an element that came back
#: goes out alone, by ``SORT`` as above; nothing to lease; an error), it renames
#: nothing: the moves find no ``<moving>`` key and move nothing, and the last rename
#: fails with "no such key", which the consumer ignores. The script renames as the
#: last write of its leases: a failing write leaves the queue where it was. A
#: ``<moving>`` key found at the start of any fetch that declares it (every consumer's
#: does: see ``give_back_lent`` in the preamble) goes back to the queue first.
FETCH = (
    with_preamble(
        r"""
local FETCH_BYTES, CHUNK_BYTES = @FETCH_BYTES@, @CHUNK_BYTES@
local C = ARGV[7]
local want, lease_ms = tonumber(ARGV[8]), tonumber(ARGV[9])
local hint = tonumber(ARGV[11]) or 0
local mode = ARGV[12]
local woken = mode == '1' or mode == '2' or mode == '4'
local handed_out = mode == '2' or mode == '4'
local moves = (mode == '3' or mode == '4') and tonumber(ARGV[13])  -- LMOVEs follow (Moves)
-- The queue lent to the moves (see Moves) is never under the moving key outside a
-- transaction of moves, but where one left it: it goes back first (a call of no moves,
-- "3" and 0, does only that).
local moving = moves and need(STEM .. 'moving:' .. C)
give_back_lent(C)
if moves == 0 then return {0} end
local t = now_ms()
redis.call('ZADD', CONSUMERS, t + HEARTBEAT, C)
-- A consumer blocks only after it moved what was due, and only until the next due
-- time it knows of (see _fetch): its wake-up call need not look again.
if not woken then release_due(t, math.max(want, RELEASE_BATCH)) end
-- the nonce of the fetch's j-th batch, and its list
local offered = moves and 1 or math.max(#ARGV - 11, 1)
local function nonce_at(j) return ARGV[j == 1 and 10 or j + 11] end
local function batch_at(j) return need(BATCH_PREFIX .. nonce_at(j) .. ':' .. C) end
local batches = {}
for j = 1, offered do batches[j] = batch_at(j) end
if redis.call('EXISTS', unpack(batches)) > 0 then
  for j = 1, offered do
    if redis.call('EXISTS', batches[j]) == 1 then
      return redis.error_reply('brokerkit: the receipt nonce ' .. nonce_at(j) .. ' is in use')
    end
  end
end
local fetches, proc = fetches_of(C), proc_of(C)
-- A message that comes back (nacked, or its lease ran out: maybe it crashed its
-- consumer) goes out alone, so that a poison message cannot take the messages
-- fetched with it down with it, time after time, until they are dead-lettered unseen.
-- Such messages are pushed to the head of the queue (the right), new ones to its
-- tail, and RETURNED counts them: no element is read to tell.
local returned = tonumber(redis.call('GET', RETURNED)) or 0
if returned < 0 then  -- another program's doing: counted again from none
  redis.call('DEL', RETURNED)
  returned = 0
end
local taken_back = false
-- A raw element carries its count in the reply (the queue keeps it as it was).
local function raw_count(e)
  if e and redis.call('HLEN', ATTEMPTS) > 0 and is_raw(e) then
    local n = redis.call('HGET', ATTEMPTS, redis.sha1hex(e))
    if n then return count_text(tonumber(n) or 0) end
  end
  return nil
end
local function take_returned()  -- one that came back is taken
  taken_back = true
  returned = returned - 1
  if returned > 0 then redis.call('SET', RETURNED, returned) else redis.call('DEL', RETURNED) end
end
local woke, alone, count = 0, false, nil
-- The BLMOVEd element is leased only if it is still there: a rescuer that took
-- this consumer for dead has already handed it back. The count may have changed since
-- the BLMOVE took it (a hand-back meanwhile), so this one element is read to tell.
if woken then
  local e = redis.call('LINDEX', proc, -1)
  if e then
    woke = 1
    count = raw_count(e)
    alone = count ~= nil or (string.sub(e, 1, 3) == 'BKR' and wrapped_count(e) ~= nil)
    if alone and returned > 0 then take_returned() end
  end
  -- handed out already under the batch's first receipt: nothing else may take it
  if handed_out and woke == 0 then return {0} end
end
local take, capped = 0, false
-- the queue's length, read once: nothing but the SORT below changes it meanwhile
local waiting = nil
if not alone and woke < want then waiting = redis.call('LLEN', QUEUE) end
if waiting and waiting > 0 then
  if returned > 0 then
    if woke == 0 then  -- else the batch stops
      take = 1
      take_returned()
      count = raw_count(redis.call('LINDEX', QUEUE, -1))
    end
  else
    -- About FETCH_BYTES at most, by the mean size of the consumer's last fetch (or of
    -- the next one out, for its first): a batch's move takes fresh memory for all of it
    -- at once; at 1 MB a batch of 100 held the server 60 ms where 4 at a time cost no
    -- more per element than LMOVE.
    if moves then
      take = moves  -- sized by the consumer, as below
    else
      if hint <= 0 then hint = #redis.call('LINDEX', QUEUE, -1) end
      take = math.min(want - woke, math.max(math.floor(FETCH_BYTES / math.max(hint, 1)), 1))
    end
  end
elseif returned > 0 and not alone and (waiting or redis.call('LLEN', QUEUE)) == 0 then
  redis.call('DEL', RETURNED)  -- the queue is empty: whatever took them, none is left
end
if take > 0 then take = math.min(take, waiting) end
local size = woke + take
if size == 0 then return {0} end
local lend = moving and take > 0 and not taken_back
local sizes, used = {}, 0
if lend then  -- the LMOVEs that follow take them (see Moves): the leases first
  used, sizes[1] = 1, take
else
  -- The elements move from the queue to the batch lists inside Redis, never through
  -- this script (a body read here is copied into Lua): SORT ... BY nosort keeps the
  -- list's order, DESC from its head (the right), and stores without replying. It
  -- copies all it moves before it stores any: about CHUNK_BYTES at a time (a batch
  -- each, of the nonces the consumer sent for it) keeps the copies in the CPU's cache,
  -- where a megabyte at once cost Redis a third more than 100 LMOVEs. Each batch's
  -- SORT reads on from where the one before stopped, and one LTRIM takes them all off.
  local per = size
  if offered > 1 then
    per = math.max(math.floor(CHUNK_BYTES / math.max(hint, 1) + 0.5), math.ceil(size / offered), 1)
  end
  local left = take
  repeat
    used = used + 1
    local n = math.min(per - (used == 1 and woke or 0), left)
    if n > 0 then
      local from = take - left  -- what the batches before took
      n = redis.call('SORT', QUEUE, 'BY', 'nosort', 'LIMIT', from, n, 'DESC', 'STORE',
        batches[used])
      left = left - n
    end
    sizes[used] = n
  until left == 0
  if take > 0 then redis.call('LTRIM', QUEUE, 0, -take - 1) end
end
if woke == 1 then  -- first in its batch (a SORT's STORE, above, would have replaced it)
  redis.call('LMOVE', proc, batches[1], 'RIGHT', 'LEFT')
  sizes[1] = sizes[1] + 1
end
waiting = waiting and waiting - take
-- stopped short (a fetch's size cap, one that came back) with more waiting: the
-- consumer looks again at once
capped = size < want and (waiting or redis.call('LLEN', QUEUE)) > 0
local deadline, tail = t + lease_ms, ':' .. C
-- One lease a batch: its deadline and delivery time in expiry, and a flag a delivery
-- in the consumer's fetches hash. The elements are out of the queue: if a lease cannot
-- be written (a key of the wrong type), undo and put them back as they were before
-- failing: nothing is lost.
local ok, err = pcall(function()
  local leases, values, flags = {}, {}, {}
  for j = 1, used do
    local nonce, n = nonce_at(j), sizes[j]
    leases[2 * j - 1], leases[2 * j] = deadline, nonce .. '0+' .. n .. tail
    values[2 * j - 1], values[2 * j] = nonce .. tail, deadline .. '.' .. t
    flags[2 * j - 1], flags[2 * j] = nonce, string.rep('0', n)
  end
  redis.call('ZADD', DEADLINES, unpack(leases))
  redis.call('HSET', EXPIRY, unpack(values))
  redis.call('HSET', fetches, unpack(flags))
  -- (RENAMENX: the one rename the transaction's own last command, checked by an ACL
  -- before anything runs, needs too; the moving key is not there)
  if lend then redis.call('RENAMENX', QUEUE, moving) end
end)
if not ok then
  for j = used, 1, -1 do  -- the last batch first, each one's first element last
    local nonce = nonce_at(j)
    pcall(redis.call, 'HDEL', EXPIRY, nonce .. tail)
    pcall(redis.call, 'HDEL', fetches, nonce)
    pcall(redis.call, 'ZREM', DEADLINES, nonce .. '0+' .. sizes[j] .. tail)
    while redis.call('LMOVE', batches[j], QUEUE, 'RIGHT', 'RIGHT') do end
  end
  if taken_back then count_returned(1) end
  return redis.error_reply(type(err) == 'table' and err.err or tostring(err))
end
return {size, count or false, capped and 1 or 0}
"""
    )
    .replace("@FETCH_BYTES@", str(FETCH_BYTES))
    .replace("@CHUNK_BYTES@", str(CHUNK_BYTES))
)


#: KEYS[1] queue, KEYS[2] returned; ARGV[1] maxlen. Sent in a publish's transaction
#: right after its LPUSHes: trims the queue to its newest ``maxlen`` elements and lowers
#: RETURNED by the ones that came back among those it dropped. They wait at the head,
#: where the trim takes the oldest from, so it drops ``min(over, returned)`` of them;
#: left counted, fresh messages would go out one a fetch as if each had come back. No
#: element is read (no body enters Lua; apart from the ``LTRIM`` its work is constant:
#: three commands, two when nothing came back) and there is no preamble: a raw element
#: dropped keeps its count in ``attempts`` (docs/backends/redis-list.md, ``maxlen``).
TRIM = r"""
local maxlen = tonumber(ARGV[1])
-- a count another program broke (not a number, another type) is the fetch's to mend
local returned = tonumber(redis.pcall('GET', KEYS[2])) or 0
if not (returned >= 1 and returned < 1e15) then  -- NaN, inf too
  redis.call('LTRIM', KEYS[1], 0, maxlen - 1)
  return
end
returned = math.floor(returned)
local dropped = math.min(redis.call('LLEN', KEYS[1]) - maxlen, returned)
if dropped <= 0 then return end
redis.call('LTRIM', KEYS[1], 0, maxlen - 1)
if returned > dropped then
  redis.call('SET', KEYS[2], string.format('%d', returned - dropped))
else
  redis.call('DEL', KEYS[2])
end
"""
