"""A process that starts while its deployment's master is down (killed, its replica not
promoted yet) rides the failover out as a running one does, instead of failing at once.

A Sentinel set whose sentinels still name the dead master was reported as "could not
connect to Redis at <the sentinels>: nothing answered", at once: no connection of this
process had reached the set yet, so a refused connection to the master looked like a
wrong address. A Redis Cluster whose slot map names the dead master failed the sync
``brokerkit.connect`` with redis-py's own ``ConnectionError`` (the client asks the map's
first master for ``COMMAND`` when it is built), and a sharded subscription in a new
process with "nothing answered". Now the sentinels naming a master, and a seed telling
the slot map, count as the deployment answering: what follows is waited for, up to
``reconnect_timeout``.

Each run is a child process (nothing in it has reached the deployment) that is ready
before the kill and starts its call right after it: well inside the failure detection
(1 s for the cluster, 3 s for the sentinels)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from brokerkit.backends.redis._keys import Keyspace
from tests.redis_cluster import RedisClusterSet, SentinelSet

#: The child: ready once imported; on "go", connects (API sys.argv[3]) and runs the
#: call (sys.argv[2]): publish, or subscribe then publish and receive that message.
CHILD = r"""
import asyncio, sys
import brokerkit, brokerkit.aio
url, call, api = sys.argv[1:4]

def sync():
    with brokerkit.connect(url, reconnect_timeout=60) as broker:
        subscription = broker.subscribe("news") if call == "subscribe" else None
        broker.publish("news", "after")
        if subscription is not None:
            delivery = subscription.receive(timeout=30)
            assert delivery is not None and delivery.body == "after", delivery

async def asynchronous():
    async with await brokerkit.aio.connect(url, reconnect_timeout=60) as broker:
        subscription = await broker.subscribe("news") if call == "subscribe" else None
        await broker.publish("news", "after")
        if subscription is not None:
            delivery = await subscription.receive(timeout=30)
            assert delivery is not None and delivery.body == "after", delivery

print("ready", flush=True)
sys.stdin.readline()
try:
    sync() if api == "sync" else asyncio.run(asynchronous())
except Exception as exc:
    print(f"FAILED {type(exc).__module__}.{type(exc).__name__}: {exc}", flush=True)
else:
    print("OK", flush=True)
"""


def _run_through(url: str, call: str, api: str, kill: Callable[[], None]) -> str:
    """What the child said: it is started, ``kill`` kills the master (and returns what
    waits for the failover), the child is let go, then the failover is waited for."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, call, api],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        wait_for_failover = kill()
        child.stdin.write("go\n")
        child.stdin.flush()
        wait_for_failover()
        output, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return output


CASES = [
    ("redis+stream", "publish", "sync"),
    ("redis+list", "publish", "asyncio"),
    ("redis+pubsub", "subscribe", "sync"),
    ("redis+pubsub", "publish", "asyncio"),
]


@pytest.mark.parametrize(("scheme", "call", "api"), CASES)
def test_a_new_process_rides_out_a_sentinel_failover(
    redis_sentinel: SentinelSet, prefix: str, scheme: str, call: str, api: str
) -> None:
    victim = redis_sentinel.current_master()
    promoted = next(s for s in redis_sentinel.servers if s is not victim)

    def kill() -> Callable[[], None]:
        victim.kill()

        def wait_for_failover() -> None:
            deadline = time.monotonic() + 60
            while not (redis_sentinel.all_name(promoted) and promoted.role() == "master"):
                assert time.monotonic() < deadline, "the sentinels never promoted the replica"
                time.sleep(0.1)
            victim.start(replica_of=promoted)  # back as a replica: it holds no data

        return wait_for_failover

    try:
        output = _run_through(redis_sentinel.url(scheme, prefix=prefix), call, api, kill)
    finally:
        redis_sentinel.restart_dead()
        redis_sentinel.wait_healthy()
    assert output.strip().endswith("OK"), output


@pytest.mark.parametrize(
    ("scheme", "call", "api"),
    [
        ("redis+stream", "publish", "sync"),
        ("redis+pubsub", "subscribe", "sync"),
        ("redis+pubsub", "publish", "sync"),
        ("redis+stream", "publish", "asyncio"),
        ("redis+pubsub", "subscribe", "asyncio"),
    ],
)
def test_a_new_process_rides_out_a_cluster_failover(
    redis_cluster: RedisClusterSet, prefix: str, scheme: str, call: str, api: str
) -> None:
    # The topic's master: its slots, and maybe the sync client's first COMMAND, go to it.
    victim = redis_cluster.master_of(Keyspace(prefix).topic("news"))

    def kill() -> Callable[[], None]:
        victim.kill()

        def wait_for_failover() -> None:
            deadline = time.monotonic() + 60
            while redis_cluster.master_of(Keyspace(prefix).topic("news")) is victim:
                assert time.monotonic() < deadline, (
                    f"the replica was never promoted\n{redis_cluster.describe()}"
                )
                time.sleep(0.1)
            victim.start()  # rejoins as the new master's replica

        return wait_for_failover

    try:
        output = _run_through(redis_cluster.url(scheme, prefix=prefix), call, api, kill)
    finally:
        redis_cluster.restart_dead()
    assert output.strip().endswith("OK"), output
