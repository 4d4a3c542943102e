"""A smoke test of the benchmark code (the benchmark itself is not part of the test run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brokerkit.cli._bench import STEPS, Measurement, bench_url, percentile
from tests.conftest import RedisTarget

report = pytest.importorskip("benchmarks.report")
raw = pytest.importorskip("benchmarks.raw")


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0


def test_bench_url_measures_every_step_on_memory() -> None:
    seen: set[str] = set()
    results = bench_url(
        "memory://", count=50, batch=20, latency_count=10, progress=lambda s, d, t: seen.add(s)
    )
    assert seen == {m.step for m in results} == set(STEPS)
    assert all(m.messages > 0 and m.seconds > 0 for m in results)


def test_raw_redis_py_runs_and_the_report_renders(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    sizes = {"count": 30, "size": 10, "batch": 10, "latency_count": 5}
    results = {
        "raw list": raw.raw_list(redis_target.client, **sizes),
        "raw stream": raw.raw_stream(redis_target.client, **sizes),
        "raw pubsub": raw.raw_pubsub(redis_target.client, **sizes),
        "memory": bench_url("memory://", **sizes),
        "redis+pubsub": [Measurement("publish", 30, 0.01)],
    }
    for name in ("raw list", "raw stream", "raw pubsub"):
        assert [m.step for m in results[name]] == [
            "publish", "publish_many", "consume_ack_p1", "consume_ack_p100", "latency"
        ]  # fmt: skip
    meta = {**sizes, "date": "today", "python": "3", "redis_version": "7", "redis": "test"}
    table = report.markdown(results, meta, {"redis+list": "not installed"})
    assert "## redis+stream" in table
    assert "not measured: not installed" in table
    assert "| redis+pubsub publish / raw one-round-trip PUBLISH |" in table
    data = report.as_json(results, meta, {})
    json.dumps(data)
    assert {t["target"] for t in data["targets"]} >= {"redis+pubsub receive rate / raw"}
