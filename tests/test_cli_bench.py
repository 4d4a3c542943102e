"""A smoke test of the benchmark code (the benchmark itself is not part of the test
run, and nothing here asserts a timing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import brokerkit
from benchmarks import raw, report, rounds, run
from brokerkit.cli._bench import (
    STEPS,
    BrokerBench,
    Measurement,
    Workload,
    _drain,
    bench_url,
    percentile,
)
from brokerkit.exceptions import BrokerError
from tests.conftest import RedisTarget

TINY = Workload(count=30, size=10, batch=10, latency_count=5)


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
    assert [m.messages for m in results] == [50, 50, 50, 50, 10]


def test_drain_reads_the_payload_of_every_delivery() -> None:
    # The consume rounds read what they receive, as a raw client holds every body:
    # a backend cannot look faster by leaving work until a delivery is read.
    bodies = [b"x" * n for n in range(1, 8)]
    with brokerkit.connect("memory://") as broker:
        with broker.subscribe("t", prefetch=3) as subscription:
            broker.publish_many("t", bodies)
            drained = _drain(broker, subscription, "s", len(bodies), 3, lambda s, d, t: None)
        assert drained == (len(bodies), sum(map(len, bodies)))
        assert broker.inspect("t").in_flight == 0


def test_bench_url_names_the_valid_steps() -> None:
    with pytest.raises(BrokerError, match="the steps are publish, publish_many"):
        bench_url("memory://", steps=["publish", "fly"])


def test_interleave_alternates_the_order_and_drops_the_warmup() -> None:
    order: list[str] = []

    def side(name: str) -> rounds.Side:
        def measure(step: str) -> Measurement:
            order.append(name)
            return Measurement(step, 10, 0.1 * (len(order)))

        return rounds.Side(name, measure, lambda: None)

    def broken(step: str) -> Measurement:
        raise RuntimeError("no server")

    result = rounds.interleave(
        [side("a"), side("b"), rounds.Side("c", broken, lambda: None)],
        ["publish"],
        rounds=3,
        warmup=1,
        say=lambda message: None,
    )
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert [m.seconds for m in result.rounds["a"]["publish"]] == pytest.approx([0.4, 0.5, 0.8])
    assert "no server" in result.skipped["c"] and "c" not in result.rounds


def test_ratios_pair_the_rounds() -> None:
    results = {
        "x": {"publish": [Measurement("publish", 100, s) for s in (1.0, 2.0, 4.0)]},
        "y": {"publish": [Measurement("publish", 100, s) for s in (2.0, 2.0, 2.0)]},
    }
    assert report.ratio(results, "x", "y", "publish") == report.Spread(1.0, 0.5, 2.0, 3)
    assert report.figures(results, "x", "publish") == report.Spread(50.0, 25.0, 100.0, 3)
    # microseconds per message: 1e6/100 - 1e6/50, 0, 1e6/25 - 1e6/50
    assert report.extra_us(results, "x", "y", "publish") == report.Spread(0.0, -1e4, 2e4, 3)


def test_every_side_runs_one_round_and_the_report_renders(
    redis_target: RedisTarget, tmp_path: Path
) -> None:
    sides: dict[str, raw.RawBench | BrokerBench] = {
        "raw list": raw.RawList(redis_target.client, TINY),
        "raw stream": raw.RawStream(redis_target.client, TINY),
        "raw pubsub": raw.RawPubsub(redis_target.client, TINY),
        "memory": BrokerBench("memory://", TINY),
    }
    results: dict[str, dict[str, list[Measurement]]] = {}
    for name, bench in sides.items():
        results[name] = {step: [bench.run(step)] for step in STEPS}
        bench.close()
        assert [ms[0].messages for ms in results[name].values()] == [30, 30, 30, 30, 5]
    lister = raw.RawList(redis_target.client, TINY)
    results[report.PIPELINED_LPUSH] = {"publish_many": [lister.publish_many_pipelined()]}
    lister.close()
    results["redis+pubsub"] = {"publish": [Measurement("publish", 30, 0.01)]}
    meta = {
        **vars(TINY),
        "rounds": 1,
        "warmup": 0,
        "date": "today",
        "python": "3",
        "redis_version": "7",
        "redis": "test",
    }
    table = report.markdown(results, meta, {"redis+list": "not installed"})
    assert "## redis+stream" in table
    assert "redis+list not measured: not installed" in table
    assert "| redis+pubsub publish / raw one-round-trip PUBLISH |" in table
    data = report.as_json(results, meta, {})
    json.dumps(data)
    assert {t["target"] for t in data["targets"]} >= {
        "redis+pubsub receive rate (prefetch 100) / raw"
    }
    assert data["results"]["raw stream"]["latency"]["p99_ms"]["rounds"] == 1


def test_the_suite_runs_end_to_end(redis_target: RedisTarget, tmp_path: Path) -> None:
    argv = ["--redis-url", redis_target.url("redis"), "--out", str(tmp_path)]
    argv += ["--count", "20", "--batch", "10", "--latency-count", "3", "--rounds", "2"]
    argv += ["--only", "redis+stream", "--only", "raw stream", "--step", "consume_ack_p100"]
    assert run.main(argv) == 0
    data = json.loads((tmp_path / "latest.json").read_text())
    assert set(data["results"]) == {"redis+stream", "raw stream"}
    assert data["ratios"]["redis+stream"]["consume_ack_p100"]["vs_raw"]["rounds"] == 2
    assert "| redis+stream consume+ack p100 / raw" in (tmp_path / "latest.md").read_text()
