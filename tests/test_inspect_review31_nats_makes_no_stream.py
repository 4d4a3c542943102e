"""On NATS, ``inspect``, ``topics`` and ``purge`` make no stream (review 31).

Before, each made the stream of the broker's ``prefix`` when it did not exist, so that
``brokerkit inspect "nats://...?prefix=typo" t`` (and ``topics``, ``dlq``) created a
JetStream stream named after a mistyped prefix, and reported the topic as it would a
topic nobody used on a prefix that exists. Now they read what is there: no stream, no
topic (the command says not found, exit 1), and no stream afterwards either.

Against the test process's own nats-server; every stream is of the test's own prefix,
and deleted when the test ends.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import nats
import pytest

import brokerkit
from brokerkit.aio import connect as connect_async
from tests.nats_server import nats_prefix, nats_url

__all__ = ["nats_prefix", "nats_url"]  # fixtures

#: Seconds a child may take: a hang guard, never a pace.
GUARD = 60.0


def _streams(url: str) -> list[str]:
    async def names() -> list[str]:
        connection = await nats.connect(url)
        try:
            return sorted(s.config.name for s in await connection.jetstream().streams_info())
        finally:
            await connection.close()

    return asyncio.run(names())


def _delete_stream(url: str, name: str) -> None:
    async def delete() -> None:
        connection = await nats.connect(url)
        try:
            await connection.jetstream().delete_stream(name)
        finally:
            await connection.close()

    asyncio.run(delete())


def test_inspect_of_a_missing_stream_reports_an_empty_topic(
    nats_url: str, nats_prefix: str
) -> None:
    with brokerkit.connect(nats_url, prefix=nats_prefix) as broker:
        info = broker.inspect("t")
    assert (info.length, info.in_flight, info.dead_lettered, info.groups) == (0, 0, 0, ())
    assert nats_prefix not in _streams(nats_url), "inspect made the stream"


def test_topics_and_purge_of_a_missing_stream_make_nothing(nats_url: str, nats_prefix: str) -> None:
    with brokerkit.connect(nats_url, prefix=nats_prefix) as broker:
        assert broker.topics() == []
        assert broker.purge("t") == 0
    assert nats_prefix not in _streams(nats_url), "topics or purge made the stream"


def test_the_async_broker_makes_nothing_either(nats_url: str, nats_prefix: str) -> None:
    async def look() -> None:
        async with connect_async(nats_url, prefix=nats_prefix) as broker:
            assert (await broker.inspect("t")).length == 0
            assert await broker.topics() == []

    asyncio.run(look())
    assert nats_prefix not in _streams(nats_url)


def test_a_stream_deleted_under_a_broker_is_not_made_again(nats_url: str, nats_prefix: str) -> None:
    with brokerkit.connect(nats_url, prefix=nats_prefix) as broker:
        broker.publish("t", "x")
        assert broker.inspect("t").length == 1
        _delete_stream(nats_url, nats_prefix)  # (an operator's, meanwhile)
        assert broker.inspect("t").length == 0
        assert broker.topics() == []
        assert broker.purge("t") == 0
    assert nats_prefix not in _streams(nats_url)


def test_an_existing_stream_is_still_read(nats_url: str, nats_prefix: str) -> None:
    with brokerkit.connect(nats_url, prefix=nats_prefix) as broker:
        broker.publish_many("t", ["a", "b"])
        with broker.subscribe("t", group="workers"):
            info = broker.inspect("t")
            assert info.length == 2
            assert [g.name for g in info.groups] == ["workers"]
            assert broker.inspect("never").length == 0
            assert broker.topics() == ["t"]
            assert broker.purge("t") == 2


@pytest.mark.parametrize("command", ["inspect", "topics"])
def test_the_command_line_makes_no_stream(nats_url: str, nats_prefix: str, command: str) -> None:
    pytest.importorskip("typer")
    env = {k: v for k, v in os.environ.items() if k != "BROKERKIT_URL"}
    argv = [f"{nats_url}?prefix={nats_prefix}"] + (["t", "--json"] if command == "inspect" else [])
    done = subprocess.run(
        [sys.executable, "-m", "brokerkit.cli", command, *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GUARD,
        env=env,
    )
    if command == "inspect":
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "not found" in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr
    assert nats_prefix not in _streams(nats_url), f"brokerkit {command} made the stream"
