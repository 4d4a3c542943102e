"""The test server itself: it must really be killable and restartable, or the
fault tests built on it prove nothing."""

from __future__ import annotations

import pytest
import redis

from tests.redis_server import RedisServer


def test_kill_then_restart_on_the_same_port(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("k", "v")
    redis_server.kill()
    with pytest.raises(redis.ConnectionError):
        redis_server.client().ping()
    redis_server.start()
    assert redis_server.client().get("k") is None  # no persistence by default
    client.close()


def test_appendonly_server_keeps_writes_across_a_kill() -> None:
    with RedisServer(appendonly=True) as server:
        server.client().set("k", "v")
        server.restart()
        assert server.client().get("k") == b"v"
