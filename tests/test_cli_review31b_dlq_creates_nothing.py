"""``brokerkit dlq URL TOPIC`` of a topic that has no dead letter creates nothing
(review 31b of the command line).

Before, listing subscribed to ``<topic>.dlq`` whatever was there: on kombu+amqp a
mistyped topic got ``<topic>.dlq``'s queue and exchange and ``<topic>.dlq.dlq``'s
exchange; on redis+stream the group ``brokerkit-dlq``'s ``XGROUP CREATE ... MKSTREAM``
created the stream (and its keys); on NATS a durable consumer; on memory the topic and
its group. Now the command asks ``inspect`` first (which declares nothing) and reads
only when it counts a dead letter waiting; with none it lists none, as before.

Each command runs as a user runs it, in a child process, against the real servers;
every name is of the test's own prefix, and removed after a failing run too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

import brokerkit
from tests.conftest import RedisTarget
from tests.kombu_rabbitmq import amqp_url, delete_names, exists, rabbitmq
from tests.nats_server import nats_prefix, nats_url

__all__ = ["nats_prefix", "nats_url", "rabbitmq"]  # fixtures

pytest.importorskip("typer")

#: Seconds a child may take: a hang guard, never a pace.
GUARD = 60.0


def _dlq(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BROKERKIT_URL"}
    return subprocess.run(
        [sys.executable, "-m", "brokerkit.cli", "dlq", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GUARD,
        env=env,
    )


def _listed_none(done: subprocess.CompletedProcess[str], topic: str) -> None:
    assert done.returncode == 0, done.stderr
    assert f"0 dead letters in '{topic}.dlq'" in done.stdout, done.stdout


@pytest.fixture
def topic() -> str:
    return f"typo-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_redis_keeps_no_key(
    redis_target: RedisTarget, prefix: str, topic: str, scheme: str
) -> None:
    client = redis_target.client()
    try:
        _listed_none(_dlq(redis_target.url(scheme, prefix=prefix), topic), topic)
        keys = sorted(client.scan_iter(match=f"{prefix}*"))
        assert keys == [], f"a listing of a never-used topic left {keys}"
    finally:
        leftovers = list(client.scan_iter(match=f"{prefix}*"))
        if leftovers:
            client.delete(*leftovers)
        client.close()


def test_kombu_declares_no_queue_nor_exchange(rabbitmq: str, topic: str) -> None:
    prefix = f"cli31b-{uuid.uuid4().hex[:8]}"
    topics = [topic, f"{topic}.dlq", f"{topic}.dlq.dlq"]
    groups = [brokerkit.DEFAULT_GROUP, "brokerkit-dlq"]
    exchanges = {f"{prefix}|{t}" for t in topics}
    queues = {f"{prefix}|{t}|{g}" for t in topics for g in groups}
    try:
        _listed_none(_dlq(f"{amqp_url()}?prefix={prefix}", topic), topic)
        made = sorted(
            [n for n in exchanges if exists("exchange", n)]
            + [n for n in queues if exists("queue", n)]
        )
        assert made == [], f"a listing of a never-used topic declared {made}"
    finally:
        delete_names(exchanges, queues)


def _consumers(url: str, stream: str) -> list[str]:
    import asyncio

    import nats

    async def names() -> list[str]:
        connection = await nats.connect(url)
        try:
            return [c.name for c in await connection.jetstream().consumers_info(stream)]
        finally:
            await connection.close()

    return asyncio.run(names())


def test_nats_makes_no_consumer(nats_url: str, nats_prefix: str, topic: str) -> None:
    with brokerkit.connect(nats_url, prefix=nats_prefix) as broker:
        broker.publish("other", "x")  # the stream is there, as an application's is
    _listed_none(_dlq(f"{nats_url}?prefix={nats_prefix}", topic), topic)
    assert _consumers(nats_url, nats_prefix) == []


#: The command run in a process that holds a named memory broker open (its topics
#: live as long as the process), then that broker's topics, as JSON on the last line.
MEMORY_CHILD = """
import json, sys
import brokerkit
from brokerkit.cli._app import run
with brokerkit.connect(sys.argv[1]) as broker:
    status = run(["dlq", *sys.argv[1:]])
    print(json.dumps([status, broker.topics()]))
"""


def test_memory_makes_no_topic(topic: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, "memory://cli31b", topic],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    status, topics = json.loads(done.stdout.splitlines()[-1])
    assert status == 0, done.stderr
    assert topics == [], f"a listing of a never-used topic made {topics}"


def test_a_dead_letter_is_still_listed(redis_target: RedisTarget, prefix: str, topic: str) -> None:
    url = redis_target.url("redis+stream", prefix=prefix)
    client = redis_target.client()
    try:
        with (
            brokerkit.connect(url, max_deliveries=1) as broker,
            broker.subscribe(topic, group="workers") as subscription,
        ):
            broker.publish(topic, "poison")
            delivery = subscription.receive(10)
            assert delivery is not None
            delivery.nack(requeue=False)
        done = _dlq(url, topic, "--json")
        assert done.returncode == 0, done.stderr
        assert [d["body"] for d in json.loads(done.stdout)] == ["poison"]
    finally:
        leftovers = list(client.scan_iter(match=f"{prefix}*"))
        if leftovers:
            client.delete(*leftovers)
        client.close()
