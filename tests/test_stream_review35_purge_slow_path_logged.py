"""redis+stream: a purge that reads every entry because the node settings are unknown or
do not keep its bound (``node_trimming``'s fallbacks: ``CONFIG`` refused, settings
outside 1 to 4 KB, ...) says so, at INFO on ``brokerkit.redis``, once a client, with
the reason (the server's error, or the setting's value) and never a password.

Before, it switched silently to the slow path (about 17 times the server's time), and a
user of the ACL in docs/security.md (no ``+config|get``) had no way to know why."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator

import pytest

import brokerkit
import brokerkit.aio
from brokerkit._logging import FIELDS
from tests.redis_server import RedisServer
from tests.test_redis_acl import documented_acl


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


def _acl_url(server: RedisServer) -> tuple[str, str]:
    """A user made from docs/security.md's stream line, and its password."""
    user, password = f"bk-acl-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    rules = [f">{password}" if r == ">CHANGE-ME" else r for r in documented_acl("stream")]
    with contextlib.closing(server.client()) as client:
        client.execute_command("ACL", "SETUSER", user, *rules)
    return f"redis+stream://{user}:{password}@127.0.0.1:{server.port}/0", password


def _slow_path_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "brokerkit.redis" and "reads every entry" in r.getMessage()
    ]


def test_a_purge_refused_config_logs_why_once_a_client(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url, password = _acl_url(server)
    caplog.set_level(logging.INFO, logger="brokerkit.redis")
    topic = f"t{uuid.uuid4().hex[:8]}"
    with brokerkit.connect(url, prefix="brokerkit") as broker:  # the ACL's key pattern
        for _ in range(2):
            broker.create_group(topic, "g", start="latest")
            broker.publish_many(topic, ["x" * 100] * 300)
            assert broker.purge(topic) == 300
    lines = _slow_path_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    (line,) = lines
    assert line.levelno == logging.INFO
    message = line.getMessage()
    assert "config|get" in message.lower(), message  # the server's refusal, as it said it
    assert password not in message
    assert all(hasattr(line, field) for field in FIELDS)
    assert line.__dict__["topic"] == topic  # the purged topic, in its fields


def test_node_settings_outside_the_bound_are_named(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``stream-node-max-bytes 0``: the value is in the line; asyncio logs alike; a
    purge that may trim logs nothing."""
    client = server.client()
    caplog.set_level(logging.INFO, logger="brokerkit.redis")

    async def purge_twice(url: str) -> None:
        async with brokerkit.aio.connect(url) as broker:
            for _ in range(2):
                await broker.create_group("t", "g", start="latest")
                await broker.publish_many("t", ["x" * 100] * 300)
                assert await broker.purge("t") == 300

    url = server.url("redis+stream") + f"?prefix=p{uuid.uuid4().hex[:8]}"
    asyncio.run(purge_twice(url))
    assert _slow_path_lines(caplog) == []
    client.config_set("stream-node-max-bytes", 0)
    asyncio.run(purge_twice(url))
    lines = _slow_path_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "stream-node-max-bytes 0" in lines[0].getMessage()
    assert lines[0].__dict__["topic"] == "t"
