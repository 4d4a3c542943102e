"""Client instructions per message of redis+stream's or redis+list's consume+ack
(prefetch 100, one ack per fetched batch, every payload read), next to raw redis-py's
XREADGROUP COUNT 100 + one XACK: counted by valgrind's callgrind, which does not depend
on the machine's load. Run from the repository root (starts a private redis-server)::

    .venv/bin/python scripts/measure_consume_cpu.py [--backend list] [--small 1000]

Each side consumes ``--small`` and then ``--large`` prefilled messages in a process of
its own under callgrind; the difference of the two counts over the difference of the
messages is the cost of one message, without the imports and connections.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import uuid
from typing import Any

BODY = b"x" * 100
PREFETCH = 100


def fill(port: int, side: str, topic: str, count: int, backend: str) -> None:
    import redis

    import brokerkit

    if side == "brokerkit":
        url = f"redis+{backend}://127.0.0.1:{port}/0?prefix=cpu"
        with brokerkit.connect(url) as broker:
            broker.subscribe(topic, prefetch=PREFETCH).close()  # the group starts here
            for _ in range(count // PREFETCH):
                broker.publish_many(topic, [BODY] * PREFETCH)
        return
    client: Any = redis.Redis(port=port)
    key = f"cpu-raw:{topic}"
    client.xgroup_create(key, "g", id="0", mkstream=True)
    for _ in range(count // PREFETCH):
        pipe = client.pipeline(transaction=False)
        for _ in range(PREFETCH):
            pipe.xadd(key, {"body": BODY})
        pipe.execute()


def consume(port: int, side: str, topic: str, count: int, backend: str) -> None:
    import redis

    import brokerkit

    if side == "brokerkit":
        url = f"redis+{backend}://127.0.0.1:{port}/0?prefix=cpu"
        with brokerkit.connect(url) as broker:
            subscription = broker.subscribe(topic, prefetch=PREFETCH)
            pending: list[brokerkit.Delivery] = []
            received = 0
            while received < count:
                delivery = subscription.receive(timeout=5)
                assert delivery is not None, f"{received} of {count}"
                received += 1
                len(delivery.payload)
                pending.append(delivery)
                if len(pending) >= PREFETCH or subscription.buffered == 0:
                    broker.ack(*pending)
                    pending.clear()
            subscription.close()
        return
    client: Any = redis.Redis(port=port)
    key = f"cpu-raw:{topic}"
    done = 0
    while done < count:
        reply = client.xreadgroup("g", "c", {key: ">"}, count=PREFETCH, block=1000)
        ids: list[bytes] = []
        for _, entries in reply.items() if isinstance(reply, dict) else reply:
            for entry in entries[0] if entries and isinstance(entries[0][0], list) else entries:
                ids.append(entry[0])
                len(entry[1][b"body"])
        client.xack(key, "g", *ids)
        done += len(ids)


def instructions(port: int, side: str, count: int, backend: str) -> int:
    topic = uuid.uuid4().hex[:8]
    me = [sys.executable, os.path.abspath(__file__), "--port", str(port), "--side", side]
    me += ["--backend", backend]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run([*me, "--fill", str(count), "--topic", topic], check=True, env=env)
    with tempfile.TemporaryDirectory() as scratch:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={scratch}/callgrind.out",
                *me,
                "--consume",
                str(count),
                "--topic",
                topic,
            ],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
    found = re.search(r"Collected : (\d+)", out.stderr)
    assert found, out.stderr
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("stream", "list"), default="stream")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=11000)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--fill", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--consume", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())
    if args.fill is not None:
        fill(args.port, args.side, args.topic, args.fill, args.backend)
        return
    if args.consume is not None:
        consume(args.port, args.side, args.topic, args.consume, args.backend)
        return
    from tests.redis_server import RedisServer

    with RedisServer() as server:
        for side in ("brokerkit", "raw"):
            small = instructions(server.port, side, args.small, args.backend)
            large = instructions(server.port, side, args.large, args.backend)
            per = (large - small) / (args.large - args.small)
            print(f"{side:<10} {per:>9,.0f} instructions per message")


if __name__ == "__main__":
    main()
