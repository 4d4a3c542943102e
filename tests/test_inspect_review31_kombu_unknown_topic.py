"""kombu: ``inspect`` of a topic nobody used reports no group (review 31).

Before, inspect reported the default group of any topic, its queue there or not, so
that ``brokerkit inspect "kombu+amqp://...?prefix=x" typo`` showed a topic with a
``default`` group where every other backend says not found (exit 1). Now a group is
reported where its queue exists (or the broker holds a delivery of it); inspect still
declares nothing (passive declares on RabbitMQ).

Against the RabbitMQ service (names of the test's own prefix, deleted afterwards)
and, for kombu+redis, the test suite's own redis-server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
from tests.kombu_rabbitmq import amqp_url, delete_names, exists, kombu_broker, rabbitmq
from tests.test_kombu_virtual import kombu_virtual, virtual_url

__all__ = ["kombu_broker", "kombu_virtual", "rabbitmq", "virtual_url"]  # fixtures

Factory = Callable[..., Any]
#: Seconds a child may take: a hang guard, never a pace.
GUARD = 60.0


def _names(prefix: str, topic: str) -> tuple[set[str], set[str]]:
    topics = [topic, f"{topic}.dlq", f"{topic}.dlq.dlq"]
    exchanges = {f"{prefix}|{t}" for t in topics}
    queues = {f"{prefix}|{t}|{g}" for t in topics for g in (brokerkit.DEFAULT_GROUP, "w")}
    return exchanges, queues


def _made(prefix: str, topic: str) -> list[str]:
    exchanges, queues = _names(prefix, topic)
    return sorted(
        [n for n in exchanges if exists("exchange", n)] + [n for n in queues if exists("queue", n)]
    )


def test_amqp_inspect_of_an_unused_topic_has_no_group(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    info = broker.inspect("typo")
    assert (info.length, info.in_flight, info.dead_lettered, info.groups) == (0, 0, 0, ())
    assert _made(broker.options.prefix, "typo") == [], "inspect declared something"
    assert broker.declared == (frozenset(), frozenset())


def test_amqp_inspect_of_a_used_topic_still_has_its_groups(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    broker.publish("jobs", "waiting")
    assert [(g.name, g.lag) for g in broker.inspect("jobs").groups] == [("default", 1)]
    with broker.subscribe("jobs", group="w"):
        info = broker.inspect("jobs")
    assert [(g.name, g.lag) for g in info.groups] == [("default", 1), ("w", 0)]
    # The dead-letter topic is declared with its topic: it exists, empty.
    assert [(g.name, g.lag) for g in broker.inspect("jobs.dlq").groups] == [("default", 0)]


def test_amqp_command_line_says_not_found(rabbitmq: str) -> None:
    pytest.importorskip("typer")
    prefix = f"bki31-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "BROKERKIT_URL"}
    try:
        url = f"{amqp_url()}?prefix={prefix}"
        done = subprocess.run(
            [sys.executable, "-m", "brokerkit.cli", "inspect", url, "typo", "--json"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GUARD,
            env=env,
        )
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "not found" in done.stderr, done.stderr
        assert _made(prefix, "typo") == [], "inspect declared something"
    finally:
        delete_names(*_names(prefix, "typo"))


@pytest.mark.parametrize("transport", ["memory", "redis"])
def test_virtual_inspect_of_an_unused_topic_has_no_group(
    kombu_virtual: Factory, transport: str
) -> None:
    broker = kombu_virtual(transport)
    info = broker.inspect("typo")
    assert (info.length, info.groups) == (0, ())
    assert broker.declared == (frozenset(), frozenset())


@pytest.mark.parametrize("transport", ["memory", "redis"])
def test_virtual_inspect_of_a_used_topic_still_has_its_groups(
    kombu_virtual: Factory, transport: str
) -> None:
    broker = kombu_virtual(transport)
    with broker.subscribe("jobs", group="w") as subscription:
        # An empty queue is still a group (on Redis, an empty list is no key).
        assert [(g.name, g.lag) for g in broker.inspect("jobs").groups] == [("w", 0)]
        broker.publish("jobs", "waiting")
        assert subscription.receive(timeout=5) is not None
    info = broker.inspect("jobs")
    assert (info.length, [(g.name, g.lag) for g in info.groups]) == (1, [("default", 1), ("w", 0)])
    other = kombu_virtual(transport)  # another process's look: it knows the default group
    assert [(g.name, g.lag) for g in other.inspect("jobs").groups] == [("default", 1)]


def test_virtual_command_line_says_not_found() -> None:
    pytest.importorskip("typer")
    done = subprocess.run(
        [sys.executable, "-m", "brokerkit.cli", "inspect", "kombu+memory://?prefix=bki31", "typo"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "not found" in done.stderr, done.stderr
