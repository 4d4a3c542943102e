"""What ``brokerkit bench`` makes on a broker (review 5 of the command line, finding 5).

Every run used to leave its durable objects behind, piling up run after run: Redis keys
went (the run works under a prefix of its own), but not kombu+redis's queues, RabbitMQ's
queues and exchanges, nor NATS's durable consumers. Now a run deletes what it declared
(kombu) or made (NATS), and names on stderr each thing it could not delete, with why
(see also tests/test_leftovers_nats_amqp.py).
"""

from __future__ import annotations

import asyncio
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


def test_bench_on_rabbitmq_deletes_every_queue_and_exchange_it_declared(
    rabbitmq: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = f"bkk-{uuid.uuid4().hex[:12]}"
    url = f"{rabbitmq}{'&' if '?' in rabbitmq else '?'}prefix={prefix}"
    try:
        assert run(["bench", url, "-n", "20", *STEPS, "--json"]) == 0
        assert "bench left" not in capsys.readouterr().err
        assert _listed("exchanges", prefix) == _listed("queues", prefix) == set()
    finally:
        # (what the server holds under the prefix, should the run have left something)
        delete_names(_listed("exchanges", prefix), _listed("queues", prefix))


def _listed(what: str, prefix: str) -> set[str]:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("rabbitmqctl is needed to list RabbitMQ's exchanges and queues")
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


def test_bench_on_nats_deletes_every_durable_consumer_it_made(
    nats_url: str,  # noqa: F811
    nats_prefix: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"{nats_url}?prefix={nats_prefix}"
    _stream(nats_url, nats_prefix)  # there before: the run keeps it, deletes its consumers
    assert run(["bench", url, "-n", "20", *STEPS, "--json"]) == 0
    assert "bench left" not in capsys.readouterr().err
    assert _consumers(nats_url, nats_prefix) == set()


def _stream(url: str, name: str) -> None:
    import nats

    async def make() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().add_stream(name=name, subjects=[f"{name}.>"])
        finally:
            await nc.close()

    asyncio.run(make())
