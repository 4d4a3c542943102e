"""``consume --no-ack`` (a peek) on a backend without ACK (review 5 of the command line,
finding 1): a message such a backend delivers is gone once received, so there is
nothing to hand back; the peek is refused before anything is read."""

from __future__ import annotations

import uuid

import pytest

import brokerkit
from brokerkit.cli._app import run
from tests.conftest import RedisTarget

pytest.importorskip("typer")


def test_a_peek_on_kombu_redis_is_refused_and_loses_nothing(
    redis_target: RedisTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the three messages were printed, dropped, and "handed 3 back unacked"."""
    prefix = f"bkt-{uuid.uuid4().hex[:12]}"
    where = f"{redis_target.host}:{redis_target.port}/{redis_target.db}"
    url = f"kombu+redis://{where}?prefix={prefix}"
    broker = brokerkit.connect(url)
    try:
        broker.publish_many("orders", ["a", "b", "c"])
        status = run(["consume", url, "orders", "--no-ack", "-n", "3", "-t", "2"])
        captured = capsys.readouterr()
        assert status == 1
        assert captured.out == ""
        assert "back unacked" not in captured.err and "received 3" not in captured.err
        assert "--no-ack" in captured.err and "ACK capability" in captured.err
        assert "without --no-ack" in captured.err
        assert [d.body for d in broker.consume("orders", timeout=1, limit=3)] == [
            "a",
            "b",
            "c",
        ]
    finally:
        broker.delete(*broker.declared)
        broker.close()
        client = redis_target.client()
        leftover = list(client.scan_iter(match=f"*{prefix}*"))
        if leftover:
            client.delete(*leftover)
        client.close()


def test_a_peek_on_redis_pubsub_is_refused_before_subscribing(
    redis_target: RedisTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    url = redis_target.url("redis+pubsub", prefix=f"bkt-{uuid.uuid4().hex[:12]}")
    assert run(["consume", url, "chat", "--no-ack", "-t", "0.5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("brokerkit: error: redis+pubsub")
    assert "consuming" not in err and "received 0 messages" not in err


def test_a_peek_on_redis_stream_still_hands_every_message_back(
    redis_target: RedisTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"bkt-{uuid.uuid4().hex[:12]}"
    url = redis_target.url("redis+stream", prefix=prefix)
    with brokerkit.connect(url) as broker:
        broker.publish_many("orders", ["a", "b"])
        assert run(["consume", url, "orders", "--no-ack", "-n", "2", "-t", "2"]) == 0
        assert "handed 2 back unacked" in capsys.readouterr().err
        got = list(broker.consume("orders", timeout=1, limit=2))
        assert [d.body for d in got] == ["a", "b"]
        broker.ack(*got)
    client = redis_target.client()
    leftover = list(client.scan_iter(match=f"{prefix}*"))
    if leftover:
        client.delete(*leftover)
    client.close()
