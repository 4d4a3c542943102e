"""``brokerkit demo`` is safe to run anywhere (review 5 of the command line, finding 6).

The README's first command must not write to whatever broker ``BROKERKIT_URL`` names:
the demo ignores that variable and runs on ``memory://`` unless a URL argument is given.
On a Redis URL given, it works under a prefix of its own (``brokerkit-demo-...``) and
deletes every key under it at the end, after Ctrl-C too.

Before: with ``BROKERKIT_URL`` set (as docs/cli.md recommends) the demo ran on that
broker, and left its keys there (15 on Redis; 6 when interrupted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis

from brokerkit.cli._app import run
from brokerkit.cli._url import URL_ENV
from tests.conftest import RedisTarget

pytest.importorskip("typer")

SMALL = ["--orders", "2", "--sale-orders", "200", "--speed", "0.1"]


def _demo_keys(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter(match="brokerkit-demo-*"))


def _keys(client: redis.Redis, prefix: str) -> list[bytes]:
    return list(client.scan_iter(match=f"*{prefix}*"))


def test_the_demo_ignores_brokerkit_url(
    redis_target: RedisTarget,
    redis_client: redis.Redis,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(URL_ENV, redis_target.url("redis+stream", prefix=prefix))
    try:
        assert run(["demo", *SMALL]) == 0
        out = capsys.readouterr().out
        assert "brokerkit demo on memory://" in out
        assert _keys(redis_client, prefix) == [] and _demo_keys(redis_client) == []
    finally:
        keys = _keys(redis_client, prefix) + _demo_keys(redis_client)
        if keys:
            redis_client.delete(*keys)


@pytest.mark.parametrize("scheme", ["redis+stream", "redis+list"])
def test_the_demo_on_a_redis_url_removes_every_key_it_made(
    redis_target: RedisTarget,
    redis_client: redis.Redis,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    scheme: str,
) -> None:
    before = set(redis_client.scan_iter(count=1000))
    try:
        assert run(["demo", redis_target.url(scheme, prefix=prefix), *SMALL]) == 0
        out = capsys.readouterr().out
        assert f"brokerkit demo on {scheme}://" in out and "all reconciled" in out
        assert set(redis_client.scan_iter(count=1000)) <= before
    finally:
        keys = _keys(redis_client, prefix) + _demo_keys(redis_client)
        if keys:
            redis_client.delete(*keys)


def test_ctrl_c_during_the_demo_on_redis_still_removes_its_keys(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    url = redis_target.url("redis+stream", prefix=prefix)
    argv = ["demo", url, "--orders", "2", "--sale-orders", "100000", "--speed", "0.1"]
    child = subprocess.Popen(
        [sys.executable, "-m", "brokerkit.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"},
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:  # the flash sale (100,000 orders) is under way
            if "Peak shaving" in line:
                break
        else:
            pytest.fail("the demo ended before the flash sale")
        child.send_signal(signal.SIGINT)
        assert child.wait(60) == 130
        # nothing the demo ran is left writing: what is there now stays
        assert _keys(redis_client, prefix) == [] and _demo_keys(redis_client) == []
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
        keys = _keys(redis_client, prefix) + _demo_keys(redis_client)
        if keys:
            redis_client.delete(*keys)
