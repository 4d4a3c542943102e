"""``brokerkit topics``, ``top``, ``dlq`` and ``exporter``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("typer")

import brokerkit
from brokerkit.backends.memory import MemoryBroker
from brokerkit.cli._app import run
from tests.conftest import RedisTarget
from tests.kombu_rabbitmq import kombu_broker, rabbitmq  # noqa: F401 (fixtures)


@pytest.fixture
def held() -> Iterator[tuple[str, brokerkit.Broker]]:
    """A memory broker of this test's own, held open so that commands share it."""
    url = f"memory://observe-{uuid.uuid4().hex}"
    with brokerkit.connect(url) as broker:
        yield url, broker


def dead_letter(broker: brokerkit.Broker, topic: str, bodies: list[Any]) -> list[str]:
    ids = broker.publish_many(topic, bodies, headers={"tenant": "acme"})
    for delivery in broker.consume(topic, group="billing", timeout=0, limit=len(bodies)):
        delivery.nack(requeue=False)
    return ids


def test_topics_lists_every_topic_with_its_dead_letters(
    held: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = held
    broker.publish("audit", "x")
    broker.publish("audit", "later", delay=60)
    dead_letter(broker, "orders", [1, 2])
    assert run(["topics", url, "--json"]) == 0
    rows = {row["topic"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"audit", "orders"}  # orders.dlq is counted under orders
    assert rows["orders"]["dead_lettered"] == 2
    assert rows["audit"]["length"] == 1
    assert rows["audit"]["scheduled"] == 1
    assert rows["audit"]["oldest_waiting_age"] >= 0
    assert run(["topics", url]) == 0
    table = capsys.readouterr().out
    assert "audit" in table and "orders" in table and "held" in table


def test_topics_on_a_backend_that_cannot_list(
    kombu_broker: Callable[..., Any],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker = kombu_broker()
    assert run(["topics", str(broker.url.render(hide_password=False))]) == 1
    assert "cannot list its topics: name them with --topic" in capsys.readouterr().err
    broker.publish("orders", 1)
    url = f"{broker.url.render(hide_password=False)}?prefix={broker.options.prefix}"
    assert run(["topics", url, "--topic", "orders", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["topic"] == "orders" and row["length"] == 1


def test_top_prints_refreshes_with_rates(
    held: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = held
    broker.publish("orders", 1)
    assert run(["top", url, "--iterations", "2", "--interval", "0.01"]) == 0
    output = capsys.readouterr().out
    _, first, second = output.split("topics on memory://")
    assert "0/s" not in first
    assert "0/s" in second  # the second refresh has rates: nothing changed
    assert run(["top", url, "--interval", "0"]) == 2


def test_dlq_lists_moves_one_then_all(
    held: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = held
    first, second, third = dead_letter(broker, "orders", ["a", "b", "c"])
    assert run(["dlq", url, "orders", "--wait", "0", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in listed] == [first, second, third]
    assert {d["reason"] for d in listed} == {"rejected"}
    assert all(d["moved_to"] is None for d in listed)

    assert run(["dlq", url, "orders", "--wait", "0", "--id", second, "--dry-run"]) == 0
    assert "would move 1 of 3" in capsys.readouterr().err
    assert broker.inspect("orders").groups[0].lag == 0  # nothing came back

    assert run(["dlq", url, "orders", "--wait", "0", "--id", second]) == 0
    assert "moved 1 of 3" in capsys.readouterr().err
    (back,) = broker.consume("orders", group="billing", timeout=0)
    assert back.body == "b"
    assert back.headers["tenant"] == "acme"
    assert back.headers["x-dlq-moves"] == "1"
    assert not any(h.startswith("x-dead-letter-") for h in back.headers)
    back.nack(requeue=False)  # dead again: a second move counts 2

    assert run(["dlq", url, "orders", "--wait", "0", "--all", "--json"]) == 0
    moved = json.loads(capsys.readouterr().out)
    assert sorted(d["body"] for d in moved) == ["a", "b", "c"]
    returned = list(broker.consume("orders", group="billing", timeout=0))
    assert sorted(d.body for d in returned) == ["a", "b", "c"]
    assert {d.body: d.headers["x-dlq-moves"] for d in returned}["b"] == "2"
    broker.ack(*returned)
    assert run(["dlq", url, "orders", "--wait", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_dlq_refuses_unknown_ids_and_both_selectors(
    held: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, broker = held
    dead_letter(broker, "orders", [1])
    assert run(["dlq", url, "orders", "--wait", "0", "--id", "nope"]) == 1
    assert "no dead letter of 'orders' has the id nope" in capsys.readouterr().err
    assert run(["dlq", url, "orders", "--wait", "0", "--all", "--id", "x"]) == 2
    assert run(["dlq", url, "orders", "--wait", "0", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1  # nothing was lost


def test_dlq_moves_a_payload_that_does_not_decode_and_goes_on_past_a_failure(
    held: tuple[str, brokerkit.Broker],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, broker = held
    # A worker dead-letters a text/plain payload that is not UTF-8 as "invalid body".
    bad = broker.publish("orders", b"\xff\xfe", content_type="text/plain")
    stuck = broker.publish("orders", "s", headers={"poison": "1"})
    good = broker.publish("orders", "ok")
    for delivery in broker.consume("orders", group="billing", timeout=0, limit=3):
        delivery.nack(requeue=False)

    # The republishing of the "poison" message fails, as any failed publish would.
    publish = MemoryBroker._publish

    def refuse_poison(self: MemoryBroker, topic: str, messages: Any) -> None:
        if any(m.headers.get("poison") == "1" for m in messages):
            raise brokerkit.ConnectionFailed("the server went away")
        publish(self, topic, messages)

    with monkeypatch.context() as patched:
        patched.setattr(MemoryBroker, "_publish", refuse_poison)
        assert run(["dlq", url, "orders", "--wait", "0", "--all", "--json"]) == 1
    captured = capsys.readouterr()
    listed = {d["id"]: d for d in json.loads(captured.out)}
    assert listed[bad]["moved_to"] == listed[good]["moved_to"] == "orders"
    assert listed[stuck]["moved_to"] is None and "went away" in listed[stuck]["error"]
    assert f"could not move {stuck}" in captured.err
    assert "1 dead letter of 'orders' could not be moved back" in captured.err

    back = list(broker.consume("orders", group="billing", timeout=0))
    assert sorted(d.payload for d in back) == [b"ok", b"\xff\xfe"]
    (raw,) = (d for d in back if d.payload == b"\xff\xfe")
    assert raw.content_type == "text/plain" and raw.headers["x-dlq-moves"] == "1"
    broker.ack(*back)
    assert run(["dlq", url, "orders", "--wait", "0", "--json"]) == 0
    assert [d["id"] for d in json.loads(capsys.readouterr().out)] == [stuck]  # still there


def test_dlq_on_redis_list(
    redis_target: RedisTarget, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = redis_target.url("redis+list", prefix=prefix, max_deliveries="1")
    with brokerkit.connect(url) as broker:
        ids = dead_letter(broker, "jobs", ["x", "y"])
        assert run(["dlq", url, "jobs", "--id", ids[0]]) == 0
        capsys.readouterr()
        (back,) = broker.consume("jobs", timeout=0)
        assert back.body == "x" and back.headers["x-dlq-moves"] == "1"
        back.ack()
        # listing with max_deliveries=1 on the URL did not dead-letter the dead letter
        assert broker.inspect("jobs.dlq").dead_lettered == 0
        assert broker.inspect("jobs").dead_lettered == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_exporter_serves_topic_gauges(redis_target: RedisTarget, prefix: str) -> None:
    url = redis_target.url("redis+stream", prefix=prefix)
    with brokerkit.connect(url) as broker:
        broker.publish_many("orders", [1, 2, 3])
        dead_letter(broker, "refunds", [1])
    port = _free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "brokerkit.cli", "exporter", url, "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        scrape = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    scrape = r.read().decode()
                break
            except OSError:
                assert exporter.poll() is None, exporter.stderr.read()  # type: ignore[union-attr]
                time.sleep(0.05)  # polling the port with a deadline, not synchronising
        assert 'brokerkit_topic_length{topic="orders"} 3.0' in scrape
        assert 'brokerkit_topic_dead_letters{topic="refunds"} 1.0' in scrape
        assert 'brokerkit_topic_consumer_lag{group="billing",topic="refunds"} 0.0' in scrape
        assert 'brokerkit_topic_oldest_waiting_age_seconds{topic="orders"}' in scrape
        assert 'brokerkit_topic_up{topic="orders"} 1.0' in scrape
    finally:
        exporter.send_signal(signal.SIGTERM)
        assert exporter.wait(timeout=30) == 143


@pytest.mark.parametrize("command", ["topics", "top", "exporter"])
def test_an_invalid_topic_given_is_a_usage_error(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, the exporter started and served the topic as down on every scrape."""
    assert run([command, "memory://", "-t", "orders", "-t", 'bad topic"x']) == 2
    assert "--topic" in capsys.readouterr().err


def test_an_address_the_exporter_cannot_listen_on_is_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: the bare ``[Errno -2] Name or service not known``, naming neither."""
    assert run(["exporter", "memory://", "--address", "bad.invalid", "--port", "9"]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on bad.invalid:9" in err
