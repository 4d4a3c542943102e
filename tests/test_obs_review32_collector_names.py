"""TopicCollector refuses topic names that are not str: given, at its construction; from
a topics callable, as a listing that failed. A label of bytes or None made every scrape
of the registry fail (prometheus_client cannot write it), the application's own metrics
on it included."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from prometheus_client import CollectorRegistry, Counter, generate_latest

import brokerkit
from brokerkit.exceptions import InvalidOption
from brokerkit.instrumentation.prometheus import TopicCollector


@pytest.fixture
def broker() -> Iterator[brokerkit.Broker]:
    with brokerkit.connect(f"memory://obs32-names-{uuid.uuid4().hex}") as broker:
        broker.publish("orders", 1)
        yield broker


@pytest.mark.parametrize(
    ("names", "shown"),
    [([b"orders"], "a bytes (b'orders')"), (["orders", None], "a NoneType (None)")],
    ids=["bytes", "none"],
)
def test_a_name_that_is_not_a_str_is_refused_at_construction(
    broker: brokerkit.Broker, names: list[object], shown: str
) -> None:
    with pytest.raises(InvalidOption) as raised:
        TopicCollector(broker, names)  # type: ignore[arg-type]
    assert str(raised.value) == f"topics holds {shown} among the topic names: each must be a str"


def test_a_listing_holding_a_name_that_is_not_a_str_is_a_listing_that_failed(
    broker: brokerkit.Broker, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    mine = Counter("app_requests", "The application's own.", registry=registry)
    mine.inc()
    registry.register(TopicCollector(broker, lambda: [None], timeout=30))
    with caplog.at_level(logging.WARNING, "brokerkit.instrumentation"):
        scrape = generate_latest(registry).decode()
    assert "app_requests_total 1.0" in scrape
    assert "brokerkit_topics_listed 0.0" in scrape
    [record] = [r for r in caplog.records if r.name == "brokerkit.instrumentation"]
    assert record.exc_info is None
    assert "the topics callable returned a NoneType (None) among the topic names" in (
        record.getMessage()
    )
