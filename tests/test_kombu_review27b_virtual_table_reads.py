"""kombu+redis reads a topic's binding table once per publish call: the check that its
default queue is still bound (since review 27) and kombu's routing of each message
share that read. Each read is an SMEMBERS; a publish of one message made two, a
``publish_many`` of n made n + 1 (a single publish ~40% slower than before the check).
Counted on the suite's own redis-server (INFO commandstats)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import RedisTarget
from tests.test_kombu_virtual import kombu_virtual, virtual_url

__all__ = ["kombu_virtual", "virtual_url"]


def _smembers(redis_target: RedisTarget) -> int:
    stats = redis_target.client().info("commandstats")
    return int(stats.get("cmdstat_smembers", {}).get("calls", 0))


def test_a_publish_call_reads_the_binding_table_once(
    kombu_virtual: Callable[..., Any], redis_target: RedisTarget
) -> None:
    broker = kombu_virtual("redis")
    broker.publish("jobs", "warm-up")  # declares and binds
    before = _smembers(redis_target)
    broker.publish_many("jobs", [f"m{i}" for i in range(20)])
    for i in range(5):
        broker.publish("jobs", f"s{i}")
    assert _smembers(redis_target) - before == 6
    with broker.subscribe("jobs") as jobs:
        got = [jobs.receive(timeout=2) for _ in range(26)]
    assert [d.body for d in got if d is not None] == [
        "warm-up",
        *[f"m{i}" for i in range(20)],
        *[f"s{i}" for i in range(5)],
    ]


def test_a_publish_after_the_binding_was_deleted_routes_by_the_new_binding(
    kombu_virtual: Callable[..., Any],
) -> None:
    # the table read before binding anew is not what the messages are routed by
    publisher = kombu_virtual("redis")
    other = kombu_virtual("redis")
    publisher.publish("jobs", "before")
    other.publish("jobs", "warm-up")
    other.delete(*other.declared)
    publisher.publish_many("jobs", ["a", "b", "c"])
    with other.subscribe("jobs") as jobs:
        got = [jobs.receive(timeout=2) for _ in range(3)]
    assert [d.body for d in got if d is not None] == ["a", "b", "c"]
