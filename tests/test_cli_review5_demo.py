"""``brokerkit demo`` is safe to run anywhere (review 5 of the command line, finding 6).

The README's first command must not write to whatever broker ``BROKERKIT_URL`` names:
the demo ignores that variable and runs on ``memory://`` unless a URL argument is given.
On a Redis URL given, it works under a prefix of its own (``brokerkit-demo-...``) and
deletes every key under it at the end, after Ctrl-C too.

Before: with ``BROKERKIT_URL`` set (as docs/cli.md recommends) the demo ran on that
broker, and left its keys there (15 on Redis; 6 when interrupted).
"""

from __future__ import annotations

import pytest
import redis

from brokerkit.cli._app import run
from brokerkit.cli._url import URL_ENV
from tests.conftest import RedisTarget
from tests.interrupting import interrupt_demo_in_its_flash_sale

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
    try:
        interrupt_demo_in_its_flash_sale(redis_target.url("redis+stream", prefix=prefix))
        # nothing the demo ran is left writing: what is there now stays
        assert _keys(redis_client, prefix) == [] and _demo_keys(redis_client) == []
    finally:
        keys = _keys(redis_client, prefix) + _demo_keys(redis_client)
        if keys:
            redis_client.delete(*keys)
