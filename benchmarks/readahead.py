"""Would fetching ahead take redis+list to 0.8 of raw stream at 10 KB? ``python -m
benchmarks.readahead``: issue 18's probe of overlapping the server's next fetch with the
client's work on the last one, with no brokerkit code.

A consumer of a list floor (raw redis-py, as :mod:`benchmarks.listfloor`: one
transaction of ``MULTI``, a script standing for the lease's, 100 ``LMOVE`` into a batch
list and ``EXEC``) hands its deliveries out one at a time from a buffer, with a few
attribute writes a message standing for a delivery's making, and acks the batch as
the suite's consume+ack does: when 100 are gathered or the buffer is empty (a script
standing for the settle's, then ``DEL`` of the batch, on a connection of its own).
It runs in two ways, in alternating rounds on one private redis-server:

- **in turn**: the next fetch is sent when the buffer is empty, as redis+list does;
- **ahead**: when ``--low`` deliveries are left in the buffer, a fetch of ``100 - low``
  is sent and its replies are read when the buffer is empty, so that the buffer and
  the fetch in flight never hold more than the prefetch (the bound the contract suite
  checks).

Printed: messages a second of each way (median of the rounds) and their ratio. Fetching
ahead pays only where the server works while the client does: the ack that ends each
batch waits behind the fetch sent ahead on the server's one thread.
"""

from __future__ import annotations

import argparse
import collections
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from benchmarks.run import redis_at

__all__ = ["measure"]

_PREFETCH = 100
#: Stands for a lease or settle script: a loop whose length sets its server time.
_SCRIPT = "local x = 0 for i = 1, tonumber(ARGV[1]) do x = x + i end return x"
#: Its loop length: about the 35 us a call of redis+list's FETCH and SETTLE at 10 KB.
_SCRIPT_LOOP = 3000


class _Delivery:
    __slots__ = ("attempt", "headers", "payload", "receipt")


def _deliveries(elements: list[Any]) -> list[_Delivery]:
    made = []
    for index, element in enumerate(elements):
        delivery = _Delivery()
        delivery.payload = element[60:]  # the body out of its envelope: a copy
        delivery.receipt = f"nonce{index}:consumer"
        delivery.attempt = 1
        delivery.headers = {}
        made.append(delivery)
    return made


def _round(client: redis.Redis, sha: str, body: bytes, count: int, low: int | None) -> float:
    """Messages a second of one round; ``low`` None: fetch in turn."""
    queue = "{" + f"readahead-{secrets.token_hex(4)}" + "}"
    for start in range(0, count, 500):
        client.lpush(queue, *[body] * min(500, count - start))
    reader: Any = client.connection_pool.get_connection()
    acker: Any = client.connection_pool.get_connection()
    batches = 0

    def send(moves: int) -> int:
        nonlocal batches
        batches += 1
        batch = f"{queue}:batch{batches}"
        commands = [
            ("MULTI",),
            ("EVALSHA", sha, 0, _SCRIPT_LOOP),
            *[("LMOVE", queue, batch, "RIGHT", "RIGHT")] * moves,
            ("EXEC",),
        ]
        reader.send_packed_command(reader.pack_commands(commands))
        return moves

    def read(moves: int) -> list[Any]:
        for _ in range(moves + 2):  # +OK, then QUEUED a command
            reader.read_response()
        return [e for e in reader.read_response()[1:] if e is not None]

    buffer: collections.deque[_Delivery] = collections.deque()
    in_flight = received = 0
    gathered: list[_Delivery] = []
    started = time.perf_counter()
    try:
        while received < count:
            if not buffer:
                buffer.extend(_deliveries(read(in_flight or send(_PREFETCH))))
                in_flight = 0
            delivery = buffer.popleft()
            received += 1
            left = count - received - len(buffer)
            if low is not None and len(buffer) == low and not in_flight and left > 0:
                in_flight = send(min(_PREFETCH - low, left))
            len(delivery.payload)
            gathered.append(delivery)
            if len(gathered) == _PREFETCH or not buffer:
                acker.send_command("EVALSHA", sha, 0, _SCRIPT_LOOP)
                acker.read_response()
                acker.send_command("DEL", f"{queue}:batch{batches}")
                acker.read_response()
                gathered = []
        elapsed = time.perf_counter() - started
        if in_flight:
            read(in_flight)
    finally:
        client.connection_pool.release(reader)
        client.connection_pool.release(acker)
        client.delete(queue, *[f"{queue}:batch{n}" for n in range(1, batches + 1)])
    return count / elapsed


def measure(url: str, size: int, count: int, rounds: int, low: int) -> dict[str, float]:
    """way -> median messages a second (one warm-up round of each way first)."""
    client = redis.Redis.from_url(url)
    body = secrets.token_bytes(size)
    rates: dict[str, list[float]] = {"in turn": [], "ahead": []}
    try:
        sha = client.script_load(_SCRIPT)
        for index in range(rounds + 1):
            ways = [("in turn", None), ("ahead", low)]
            for name, way in ways if index % 2 else reversed(ways):
                rate = _round(client, sha, body, count, way)
                if index:
                    rates[name].append(rate)
    finally:
        client.close()
    return {name: statistics.median(values) for name, values in rates.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readahead", description=__doc__)
    parser.add_argument("--redis-url", help="an existing Redis (default: start a private one)")
    parser.add_argument("--size", type=int, default=10_000, help="body bytes")
    parser.add_argument("--count", type=int, default=20_000, help="messages a round")
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds of each way")
    parser.add_argument(
        "--low", type=int, default=50, help="deliveries left in the buffer when ahead fetches"
    )
    args = parser.parse_args(argv)
    if not 0 < args.low < _PREFETCH:
        parser.error(f"--low must be between 1 and {_PREFETCH - 1}, not {args.low}")
    with redis_at(args.redis_url) as url:
        result = measure(url, args.size, args.count, args.rounds, args.low)
    print(f"{args.size:,} B bodies, fetch ahead at {args.low} left, median of {args.rounds}")
    for name, rate in result.items():
        print(f"{name}: {rate:,.0f} messages a second")
    print(f"ahead / in turn: {result['ahead'] / result['in turn']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
