"""The --brokerkit-url runner removes what each contract test left under its ``{uuid}``,
and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from brokerkit.contracts.pytest_plugin import PROFILE_ENV, pytest_brokerkit_cleanup
from tests.conftest import RedisTarget

ROOT = Path(__file__).resolve().parent.parent

#: A few contract tests that leave keys of every kind behind: topics, groups, consumer
#: registries, lease sets, dead-letter topics.
_TESTS = (
    "test_round_trip_keeps_body_headers_and_id or test_nack_without_requeue_dead_letters_at_once"
    " or test_topics_lists_dead_letter_topics or test_inspect_counts_are_per_topic"
)


def _keys(target: RedisTarget, pattern: str) -> list[bytes]:
    client = target.client()
    try:
        return list(client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_a_url_run_leaves_no_key_under_its_prefix(
    redis_target: RedisTarget, scheme: str, tmp_path: Path
) -> None:
    base = f"bkt-url-clean-{uuid.uuid4().hex[:8]}"
    url = redis_target.url(scheme, prefix=f"{base}-{{uuid}}")
    keep = redis_target.client()
    try:
        # Someone else's keys: the same base without the test's uuid, and a longer one.
        keep.set(f"{base}:{{other}}", "theirs")
        keep.set(f"{base}x:{{other}}", "theirs")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--brokerkit-url",
                url,
                "--pyargs",
                "brokerkit.contracts",
                "-k",
                _TESTS,
                "-p",
                "no:cacheprovider",
                "-p",
                "no:randomly",
                "-q",
            ],
            cwd=tmp_path,
            env={**os.environ, PROFILE_ENV: "smoke", "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert " passed" in run.stdout, run.stdout[-3000:]
        left = _keys(redis_target, f"{base}-*")
        assert left == [], f"the run left {len(left)} keys under its prefix: {left[:10]}"
        assert keep.get(f"{base}:{{other}}") == b"theirs"
        assert keep.get(f"{base}x:{{other}}") == b"theirs"
    finally:
        keep.delete(f"{base}:{{other}}", f"{base}x:{{other}}")
        for key in _keys(redis_target, f"{base}*"):
            keep.delete(key)
        keep.close()


def test_the_redis_cleanup_removes_only_the_tests_own_prefix(redis_target: RedisTarget) -> None:
    fresh = uuid.uuid4().hex[:12]
    mine, other = f"bkt-clean-{fresh}", f"bkt-clean-{uuid.uuid4().hex[:12]}"
    client = redis_target.client()
    try:
        client.set(f"{mine}:{{t}}", "x")
        client.hset(f"{mine}:{{t}}:consumers", "c", "1")
        client.set(f"{other}:{{t}}", "keep")
        client.set(f"{mine}x:{{t}}", "keep")  # a longer prefix is another namespace
        url = redis_target.url("redis+stream", prefix=mine)
        assert pytest_brokerkit_cleanup(url=url, namespace=fresh) == 2
        assert client.exists(f"{mine}:{{t}}", f"{mine}:{{t}}:consumers") == 0
        assert client.get(f"{other}:{{t}}") == b"keep"
        assert client.get(f"{mine}x:{{t}}") == b"keep"
        # A prefix the runner did not make the test's own is never touched.
        shared = redis_target.url("redis+stream", prefix=other)
        assert pytest_brokerkit_cleanup(url=shared, namespace=fresh) == 0
        assert client.get(f"{other}:{{t}}") == b"keep"
        # Another backend's URL is left to its own plugin.
        assert pytest_brokerkit_cleanup(url="memory://x", namespace=fresh) is None
    finally:
        client.delete(f"{mine}:{{t}}", f"{mine}:{{t}}:consumers", f"{other}:{{t}}")
        client.delete(f"{mine}x:{{t}}")
        client.close()


def test_a_prefix_is_removed_as_text_not_as_a_pattern(redis_target: RedisTarget) -> None:
    """A prefix holding glob characters removes only the keys that start with it."""
    from brokerkit._url import BrokerURL
    from brokerkit.backends.redis._unlink import unlink_prefixed

    base = f"bkt-glob-{uuid.uuid4().hex[:8]}"
    client = redis_target.client()
    try:
        ours = [f"{base}-[a]*?:{n}" for n in range(3)]
        others = [f"{base}-a-x:1", f"{base}-[a]x:1", f"{base}-[b]*?:1"]
        for key in (*ours, *others):
            client.set(key, "x")
        removed = unlink_prefixed(BrokerURL.parse(redis_target.url("redis+list")), ours[0][:-1])
        assert removed == 3
        assert sorted(_keys(redis_target, f"{base}*")) == sorted(k.encode() for k in others)
    finally:
        client.delete(*others)
        client.close()
