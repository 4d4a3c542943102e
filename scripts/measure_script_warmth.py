"""Server time of a Lua script against the gap before it: how much a script costs a
Redis that was idle (the woken fetch of a consumer that waited) against one kept busy.
Run from the repository root (starts a private redis-server)::

    .venv/bin/python scripts/measure_script_warmth.py [--calls 300]

For each gap (none, 2 ms, 20 ms) it runs ``--calls`` calls of each of an empty
script, a script of nine cheap commands (the shape of redis+list's woken fetch) and a
plain ``LPUSH``, one gap apart, and prints the median and 90th percentile of their
durations in the SLOWLOG (microseconds, every command logged).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import redis

EMPTY = "return 1"
NINE_COMMANDS = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1], 'c')
redis.call('GET', KEYS[2])
redis.call('LLEN', KEYS[3])
redis.call('HSET', KEYS[4], 'a', 'b')
redis.call('HSET', KEYS[5], 'a', 'b')
redis.call('ZADD', KEYS[6], 1, 'g')
redis.call('EXISTS', KEYS[7])
redis.call('LINDEX', KEYS[3], -1)
return 1
"""
GAPS = (0.0, 0.002, 0.02)


def durations(
    client: redis.Redis, command: bytes, call: Callable[[], object], calls: int, gap: float
) -> list[int]:
    """The SLOWLOG durations of ``calls`` calls of ``command``, ``gap`` seconds apart
    (a script whole: the commands it runs are logged too, and left out)."""
    client.slowlog_reset()
    for _ in range(calls):
        call()
        if gap:
            time.sleep(gap)  # the gap is what is measured: the server idles through it
    log = client.slowlog_get(calls * 20)
    return [int(e["duration"]) for e in log if e["command"].split()[0] == command]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())
    from tests.redis_server import RedisServer

    with RedisServer() as server:
        client = redis.Redis(port=server.port)
        client.config_set("slowlog-log-slower-than", 0)
        client.config_set("slowlog-max-len", args.calls * 20)
        empty, nine = client.script_load(EMPTY), client.script_load(NINE_COMMANDS)
        sides: dict[str, tuple[bytes, Callable[[], object]]] = {
            "empty script": (b"EVALSHA", lambda: client.evalsha(empty, 0)),
            "nine commands": (b"EVALSHA", lambda: client.evalsha(nine, 7, *"abcdefg")),
            "LPUSH": (b"LPUSH", lambda: client.lpush("q", "x")),
        }
        print(f"{'':<15}" + "".join(f"{f'gap {g * 1000:g} ms':>20}" for g in GAPS))
        for name, (command, call) in sides.items():
            cells = []
            for gap in GAPS:
                found = sorted(durations(client, command, call, args.calls, gap))
                p90 = found[int(len(found) * 0.9)]
                cells.append(f"{statistics.median(found):>8g} (p90 {p90:>4})")
            print(f"{name:<15}" + "".join(f"{c:>20}" for c in cells))
        client.close()


if __name__ == "__main__":
    main()
