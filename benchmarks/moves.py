"""The server time of the ways a reliable list queue can take 100 elements, by body size:
``python -m benchmarks.moves``.

A design probe for issue 18 (no brokerkit code runs): each way moves 100 elements from a
queue into a consumer's keeping and gets their bodies to the client, on a private
redis-server (or ``--redis-url``, under keys of its own: its SLOWLOG is reset and read,
so other clients' commands would count), alternating ways round by round; the server
time is the sum of the round's top-level commands in the SLOWLOG (every command logged
while it runs): a script's time includes the commands it runs, and the commands of a
transaction count once each (``INFO commandstats`` counts nested commands again, and
``EXEC`` with the commands inside it: an earlier version of this probe summed it, which
counted a script's moves two or three times).

- ``raw LMOVE x100``: 100 pipelined ``LMOVE queue processing RIGHT RIGHT`` (the limit;
  issue 18's baseline);
- ``Lua RPOP n + RPUSH``: one script pops 100 into Lua and pushes them to the
  processing list, returning them (every body enters Lua: what redis+list does);
- ``Lua LMOVE x100 + LRANGE``: a script runs the 100 ``LMOVE`` (each reply, the body,
  comes into Lua and is dropped), then an ``LRANGE`` of the processing list's tail
  carries the bodies, in one transaction;
- ``Lua SORT..STORE + LRANGE``: a script copies the 100 with ``SORT queue BY nosort
  LIMIT 0 100 DESC STORE batch`` and ``LTRIM``s them off the queue (no body enters Lua;
  Redis copies them), then an ``LRANGE`` of the batch list, in one transaction;
- ``Lua SORT..STORE by chunks + LRANGE``: the same, a batch list an about
  ``CHUNK_BYTES`` (what redis+list does: see :mod:`brokerkit.backends.redis.list.plan`);
- ``raw XREADGROUP``: ``XREADGROUP ... COUNT 100`` of a stream's 100 new entries, each
  body in one field (a stream leases an entry by reference: its body is copied once,
  into the reply);
- ``by reference: SORT..STORE + SORT GET``: the bodies wait in string keys of their
  own and the queue holds their names; the script moves 100 names as above, then
  ``SORT batch BY nosort GET <prefix>*`` reads the bodies by name, in one
  transaction: a list queue that leases by reference (not what redis+list does: a
  probe of what that design would cost Redis).

The queue is filled anew before each round, so each way reads bodies just written.
"""

from __future__ import annotations

import argparse
import os
import statistics
import uuid
from collections.abc import Callable
from typing import Any

import redis

from benchmarks.run import redis_at
from benchmarks.servertime import slowlog
from brokerkit.backends.redis.list.plan import per_batch

__all__ = ["SORT_STORE", "WAYS", "main", "measure"]

BATCH = 100

_POP_PUSH = """
local got = redis.call('RPOP', KEYS[1], ARGV[1])
if not got then return {} end
redis.call('RPUSH', KEYS[2], unpack(got))
return got
"""
_LMOVES = """
for _ = 1, tonumber(ARGV[1]) do
  if not redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'RIGHT') then break end
end
return 1
"""
_SORT_CHUNKS = """
local left = math.min(tonumber(ARGV[1]), redis.call('LLEN', KEYS[1]))
local per, j = tonumber(ARGV[2]), 1
while left > 0 do
  j = j + 1
  local n = math.min(per, left)
  redis.call('SORT', KEYS[1], 'BY', 'nosort', 'LIMIT', 0, n, 'DESC', 'STORE', KEYS[j])
  redis.call('LTRIM', KEYS[1], 0, -(n + 1))
  left = left - n
end
return j - 1
"""
#: Moves up to ARGV[1] elements from the head (the right) of list KEYS[1] into list
#: KEYS[2], next out first, inside Redis; returns how many.
SORT_STORE = """
local n = math.min(tonumber(ARGV[1]), redis.call('LLEN', KEYS[1]))
if n == 0 then return 0 end
redis.call('SORT', KEYS[1], 'BY', 'nosort', 'LIMIT', 0, n, 'DESC', 'STORE', KEYS[2])
redis.call('LTRIM', KEYS[1], 0, -(n + 1))
return n
"""

#: How a way takes the batch: (client, queue, processing, batch, its script or None,
#: the body size).
Way = Callable[[redis.Redis, str, str, str, object, int], list[bytes]]
#: How its queue is filled: (client, queue, body).
Fill = Callable[[redis.Redis, str, bytes], None]


def _fill_list(r: redis.Redis, queue: str, body: bytes) -> None:
    r.lpush(queue, *([body] * BATCH))


def _fill_stream(r: redis.Redis, queue: str, body: bytes) -> None:
    with r.pipeline(transaction=False) as pipe:
        for _ in range(BATCH):
            pipe.xadd(queue, {"body": body})
        pipe.xgroup_create(queue, "g", id="0")
        pipe.execute()


def _body_key(queue: str) -> str:
    return queue + ":body:"


def _fill_names(r: redis.Redis, queue: str, body: bytes) -> None:
    names = [str(i) for i in range(BATCH)]
    with r.pipeline(transaction=False) as pipe:
        pipe.mset({_body_key(queue) + name: body for name in names})
        pipe.lpush(queue, *names)
        pipe.execute()


def _raw(
    r: redis.Redis, queue: str, processing: str, batch: str, script: object, size: int
) -> list[bytes]:
    with r.pipeline(transaction=False) as pipe:
        for _ in range(BATCH):
            pipe.lmove(queue, processing, "RIGHT", "RIGHT")
        return list(pipe.execute())


def _pop_push(
    r: redis.Redis, queue: str, processing: str, batch: str, script: object, size: int
) -> list[bytes]:
    run: redis.commands.core.Script = script  # type: ignore[assignment]
    return list(run(keys=[queue, processing], args=[BATCH]))


def _then_lrange(target: str) -> Way:
    def way(
        r: redis.Redis, queue: str, processing: str, batch: str, script: object, size: int
    ) -> list[bytes]:
        run: redis.commands.core.Script = script  # type: ignore[assignment]
        keys = [queue, processing] if target == "processing" else [queue, batch]
        with r.pipeline(transaction=True) as pipe:
            pipe.evalsha(run.sha, 2, *keys, BATCH)
            pipe.lrange(keys[1], -BATCH, -1)
            replies = pipe.execute()
        return list(replies[1])

    return way


def _sort_chunks(
    r: redis.Redis, queue: str, processing: str, batch: str, script: object, size: int
) -> list[bytes]:
    run: redis.commands.core.Script = script  # type: ignore[assignment]
    per = per_batch(max(size, 1))
    batches = [f"{batch}:{j}" for j in range(-(-BATCH // per))]
    with r.pipeline(transaction=True) as pipe:
        pipe.evalsha(run.sha, 1 + len(batches), queue, *batches, BATCH, per)
        for name in batches:
            pipe.lrange(name, 0, -1)
        replies = pipe.execute()
    return [body for reply in replies[1:] for body in reply]


def _xreadgroup(
    r: redis.Redis, queue: str, processing: str, batch: str, script: object, size: int
) -> list[bytes]:
    reply: Any = r.xreadgroup("g", "c", {queue: ">"}, count=BATCH)
    return [fields[b"body"] for _, entries in reply for _, fields in entries]


def _by_reference(
    r: redis.Redis, queue: str, processing: str, batch: str, script: object, size: int
) -> list[bytes]:
    run: redis.commands.core.Script = script  # type: ignore[assignment]
    with r.pipeline(transaction=True) as pipe:
        pipe.evalsha(run.sha, 2, queue, batch, BATCH)
        pipe.sort(batch, by="nosort", get=[_body_key(queue) + "*"])
        replies = pipe.execute()
    return list(replies[1])


#: name -> (the Lua it registers, or None; how it takes the batch; how its queue fills).
WAYS: dict[str, tuple[str | None, Way, Fill]] = {
    "raw LMOVE x100": (None, _raw, _fill_list),
    "Lua RPOP n + RPUSH": (_POP_PUSH, _pop_push, _fill_list),
    "Lua LMOVE x100 + LRANGE": (_LMOVES, _then_lrange("processing"), _fill_list),
    "Lua SORT..STORE + LRANGE": (SORT_STORE, _then_lrange("batch"), _fill_list),
    "Lua SORT..STORE by chunks + LRANGE": (_SORT_CHUNKS, _sort_chunks, _fill_list),
    "raw XREADGROUP": (None, _xreadgroup, _fill_stream),
    "by reference: SORT..STORE + SORT GET": (SORT_STORE, _by_reference, _fill_names),
}


#: Room in the SLOWLOG for a round's commands (100 ``LMOVE``s, or a script and 100
#: ``LRANGE``s of one element a batch at 1 MB), which must not push the first out.
_SLOWLOG_ROOM = 8 * BATCH


def _top_level_usec(r: Any) -> float:
    """The microseconds of the top-level commands the SLOWLOG holds, but the SLOWLOG's
    own (its ``RESET`` is logged, with the time it took to free what it cleared)."""
    entries = slowlog(r, _SLOWLOG_ROOM)
    if len(entries) >= _SLOWLOG_ROOM:
        raise RuntimeError("benchmarks.moves: the SLOWLOG filled up; a round's start was lost")
    return float(
        sum(e.usec for e in entries if not e.nested and not e.command.startswith("slowlog"))
    )


def measure(url: str, size: int, rounds: int) -> dict[str, float]:
    """The median server us of taking 100 elements of ``size`` bytes, per way."""
    r = redis.Redis.from_url(url)
    tag = "{bk-moves-" + uuid.uuid4().hex[:8] + "}"
    queue, processing, batch = tag + ":queue", tag + ":processing", tag + ":batch"
    body = os.urandom(size)
    bodies = [_body_key(queue) + str(i) for i in range(BATCH)]
    bodies += [f"{batch}:{j}" for j in range(BATCH)]  # and the batches by chunks
    scripts = {name: r.register_script(lua) if lua else None for name, (lua, *_) in WAYS.items()}
    times: dict[str, list[float]] = {name: [] for name in WAYS}
    saved: dict[str, str] = r.config_get("slowlog-*")  # type: ignore[assignment]
    try:
        r.config_set("slowlog-log-slower-than", 0)
        r.config_set("slowlog-max-len", _SLOWLOG_ROOM)
        for round_ in range(rounds + 1):  # the first round warms up
            for name, (_, way, fill) in WAYS.items():
                r.delete(queue, processing, batch, *bodies)
                fill(r, queue, body)
                script = scripts[name]
                if script is not None:
                    r.script_load(script.script)
                r.slowlog_reset()
                got = way(r, queue, processing, batch, script, size)
                spent = _top_level_usec(r)
                assert len(got) == BATCH, name
                assert all(g == body for g in got), name
                if round_:
                    times[name].append(spent)
    finally:
        r.config_set("slowlog-log-slower-than", saved["slowlog-log-slower-than"])
        r.config_set("slowlog-max-len", saved["slowlog-max-len"])
        r.delete(queue, processing, batch, *bodies)
        r.close()
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.moves", description=__doc__)
    parser.add_argument("--redis-url", help="an existing Redis (default: start a private one)")
    parser.add_argument("--sizes", default="100,10000,1000000", help="body sizes in bytes")
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds per size")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    names = list(WAYS)
    print("| body bytes | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    with redis_at(args.redis_url) as url:
        for size in sizes:
            rounds = max(3, args.rounds // 3) if size >= 1_000_000 else args.rounds
            medians = measure(url, size, rounds)
            raw = medians[names[0]]
            cells = [f"{medians[n]:,.0f} us ({medians[n] / raw:.2f}x)" for n in names]
            print(f"| {size:,} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
