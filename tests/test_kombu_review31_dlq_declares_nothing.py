"""kombu+amqp: reading a topic's dead letters (``brokerkit dlq``, or any subscribe of
the dead-letter topic's default group) declares nothing when they are there
(review 31).

Subscribing declared the dead-letter topic as a topic of its own: ``<t>.dlq`` and its
default queue, and *their* dead-letter topic, ``<t>.dlq.dlq``, with its default queue
and ``<t>.dlq.dlq.dlq``'s exchange. So ``brokerkit dlq URL TOPIC``, an inspection,
created a queue and an exchange for a topic that existed. The default queue of
``<t>.dlq`` is declared with its topic ``<t>`` (by a publish or subscribe of it):
reading it is now a passive ``queue.declare``; a missing one is declared as ``<t>``
would declare it (subscribing declares a topic: the contract suite subscribes to a
dead-letter topic before its topic exists), and nothing beyond.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.kombu_rabbitmq import delete_names, exists, kombu_broker, rabbitmq

pytest.importorskip("typer")

from brokerkit.cli._app import run

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


def _names(prefix: str, topic: str) -> dict[str, list[str]]:
    """Every exchange and queue of ``topic``'s dead-letter chain, three deep."""
    topics = [f"{topic}.dlq", f"{topic}.dlq.dlq", f"{topic}.dlq.dlq.dlq"]
    return {
        "exchange": [f"{prefix}|{t}" for t in topics],
        "queue": [f"{prefix}|{t}|default" for t in topics],
    }


def _existing(prefix: str, topic: str) -> set[str]:
    return {n for kind, names in _names(prefix, topic).items() for n in names if exists(kind, n)}


@pytest.fixture
def cleanup() -> Any:
    made: list[tuple[str, str]] = []
    yield made
    # (what a failing run created: only names of this test's own prefix)
    for prefix, topic in made:
        names = _names(prefix, topic)
        delete_names(set(names["exchange"]), set(names["queue"]))


def test_dlq_of_a_topic_lists_its_dead_letters_and_declares_nothing(
    kombu_broker: Factory, capsys: pytest.CaptureFixture[str], cleanup: list[tuple[str, str]]
) -> None:
    broker = kombu_broker()
    prefix = broker.options.prefix
    cleanup.append((prefix, "orders"))
    with broker.subscribe("orders", group="g") as subscription:
        broker.publish("orders", "dead")
        delivery = subscription.receive(10)
        assert delivery is not None
        delivery.nack(requeue=False)
    before = _existing(prefix, "orders")
    assert f"{prefix}|orders.dlq|default" in before
    assert f"{prefix}|orders.dlq.dlq|default" not in before
    url = f"{broker.url.render(hide_password=False)}?prefix={prefix}"
    for _ in range(2):
        assert run(["dlq", url, "orders", "--json", "--wait", "1"]) == 0
        assert [d["body"] for d in json.loads(capsys.readouterr().out)] == ["dead"]
        assert _existing(prefix, "orders") == before


def test_subscribing_to_a_dead_letter_topic_never_declared_declares_it_as_its_topic_would(
    kombu_broker: Factory, cleanup: list[tuple[str, str]]
) -> None:
    broker = kombu_broker()
    prefix = broker.options.prefix
    cleanup.append((prefix, "never"))
    with broker.subscribe("never.dlq") as dead:  # (it reads what comes from now on)
        declared = _existing(prefix, "never")
        with broker.subscribe("never", group="g") as subscription:
            broker.publish("never", "dead")
            delivery = subscription.receive(10)
            assert delivery is not None
            delivery.nack(requeue=False)
        letter = dead.receive(10)
        assert letter is not None and letter.body == "dead"
        letter.ack()
    # The exchange and default queue of never.dlq, and the exchange they name for
    # their own dead letters: not never.dlq.dlq's queue, nor never.dlq.dlq.dlq.
    assert declared == {
        f"{prefix}|never.dlq",
        f"{prefix}|never.dlq|default",
        f"{prefix}|never.dlq.dlq",
    }


def test_a_dead_letter_queue_deleted_is_declared_again_by_a_subscribe(
    kombu_broker: Factory, cleanup: list[tuple[str, str]]
) -> None:
    broker = kombu_broker()
    prefix = broker.options.prefix
    cleanup.append((prefix, "gone"))
    broker.subscribe("gone.dlq").close()
    delete_names(set(), {f"{prefix}|gone.dlq|default"})
    with broker.subscribe("gone.dlq") as dead:
        assert f"{prefix}|gone.dlq|default" in _existing(prefix, "gone")
        assert dead.receive(0) is None
