"""TopicCollector given one topic name as a str: before, ``tuple(dict.fromkeys("orders"))``
split it into letters, and every scrape reported (and inspected) the topics ``o``,
``r``, ``d``, ``e``, ``s``, each up with length 0, and never ``orders``: an alert on the
topic's length or up could not fire. publish_many refuses a single str the same way."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from prometheus_client import CollectorRegistry, generate_latest

import brokerkit
from brokerkit.instrumentation.prometheus import TopicCollector


@pytest.mark.parametrize("one", ["orders", b"orders"], ids=["str", "bytes"])
def test_one_topic_name_is_refused_not_split_into_letters(one: object) -> None:
    with (
        brokerkit.connect(f"memory://review30-{uuid.uuid4().hex}") as broker,
        pytest.raises(brokerkit.InvalidOption, match=r"\['orders'\]"),
    ):
        TopicCollector(broker, one)  # type: ignore[arg-type]


def test_a_list_of_one_topic_is_reported_by_its_name() -> None:
    with brokerkit.connect(f"memory://review30-{uuid.uuid4().hex}") as broker:
        broker.publish("orders", 1)
        registry = CollectorRegistry()
        registry.register(TopicCollector(broker, ["orders"]))
        scrape = generate_latest(registry).decode()
    assert 'brokerkit_topic_length{topic="orders"} 1.0' in scrape
    assert 'topic="o"' not in scrape
