"""What ``brokerkit bench`` makes on a broker (review 5 of the command line, finding 5).

Every run used to leave its durable objects behind, piling up run after run: Redis keys
went (the run works under a prefix of its own), but not kombu+redis's queues, RabbitMQ's
queues and exchanges, nor NATS's durable consumers. Now a run deletes what it declared
where the backend offers a way (kombu's virtual transports), and else names on stderr
each thing it left (kombu+amqp, NATS), with how to remove it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid

import pytest

from brokerkit.cli._app import run
from tests.conftest import RedisTarget
from tests.kombu_rabbitmq import delete_names, rabbitmq, raw_connection  # noqa: F401
from tests.nats_server import nats_prefix, nats_url  # noqa: F401 (fixtures)

pytest.importorskip("typer")

STEPS = ["--step", "publish", "--step", "consume_ack_p1"]


def test_bench_on_kombu_redis_deletes_its_queues(
    redis_target: RedisTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"bkt-{uuid.uuid4().hex[:12]}"
    where = f"{redis_target.host}:{redis_target.port}/{redis_target.db}"
    url = f"kombu+redis://{where}?prefix={prefix}"
    client = redis_target.client()
    try:
        assert run(["bench", url, "-n", "20", *STEPS, "--json"]) == 0
        assert "bench left" not in capsys.readouterr().err
        assert list(client.scan_iter(match=f"*{prefix}*")) == []
    finally:
        keys = list(client.scan_iter(match=f"*{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _left(err: str) -> list[str]:
    assert "bench left" in err, err
    return [line.strip() for line in err.splitlines() if line.startswith("  ")]


def test_bench_on_rabbitmq_names_every_queue_and_exchange_it_left(
    rabbitmq: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = f"bkk-{uuid.uuid4().hex[:12]}"
    url = f"{rabbitmq}{'&' if '?' in rabbitmq else '?'}prefix={prefix}"
    queues: set[str] = set()
    exchanges: set[str] = set()
    try:
        assert run(["bench", url, "-n", "20", *STEPS, "--json"]) == 0
        err = capsys.readouterr().err
        assert "rabbitmqctl delete_queue" in err
        for line in _left(err):
            kind, name = line.split(" ", 1)
            (queues if kind == "queue" else exchanges).add(name)
        assert all(name.startswith(f"{prefix}|bench-") for name in queues | exchanges)
        # the default queue of each topic and of its dead-letter topic, and their exchanges
        assert len(queues) == 4 and len(exchanges) >= 4
        with raw_connection() as connection:
            channel = connection.channel()
            for name in queues:
                channel.queue_declare(name, passive=True)  # raises if it is not there
            for name in exchanges:
                channel.exchange_declare(name, type="direct", passive=True)
            channel.close()
    finally:
        # (and what the server holds under the prefix, should the names not be printed)
        delete_names(exchanges | _listed("exchanges", prefix), queues | _listed("queues", prefix))


def _listed(what: str, prefix: str) -> set[str]:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return set()
    listed = subprocess.run(
        [ctl, "-q", f"list_{what}", "name"], capture_output=True, text=True, timeout=60
    )
    return {name for name in listed.stdout.splitlines() if name.startswith(f"{prefix}|")}


def _consumers(url: str, stream: str) -> set[str]:
    import nats

    async def listed() -> set[str]:
        nc = await nats.connect(url)
        try:
            return {c.name for c in await nc.jetstream().consumers_info(stream)}
        finally:
            await nc.close()

    return asyncio.run(listed())


def test_bench_on_nats_names_every_durable_consumer_it_left(
    nats_url: str,  # noqa: F811
    nats_prefix: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"{nats_url}?prefix={nats_prefix}"
    assert run(["bench", url, "-n", "20", *STEPS, "--json"]) == 0
    err = capsys.readouterr().err
    assert "nats consumer rm STREAM NAME" in err
    named = set()
    for line in _left(err):
        match = re.fullmatch(rf"consumer (\S+) of the stream {nats_prefix}", line)
        assert match is not None, line
        named.add(match.group(1))
    assert named and named == _consumers(nats_url, nats_prefix)
