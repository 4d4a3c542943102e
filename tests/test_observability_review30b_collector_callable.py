"""TopicCollector's callable ``topics`` (the listing form), as cc78793 made its list form:

- an async callable (``async_broker.topics`` given to a sync broker's collector) is
  refused when made; before, it was taken, and every scrape logged "'coroutine' object
  is not iterable" with a traceback, warned of a coroutine never awaited, and reported
  ``brokerkit_topics_listed 0``;
- a callable that returns one name (``lambda: "orders"``) is a listing that failed, as
  a callable that raises is (logged, ``brokerkit_topics_listed 0``, the topics of the
  last listing reported down), not the topics ``d``, ``e``, ``o``, ``r``, ``s``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
import warnings
from collections.abc import Iterable

import pytest

pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from prometheus_client import CollectorRegistry, generate_latest

import brokerkit
import brokerkit.aio
from brokerkit.instrumentation.prometheus import TopicCollector


def _url() -> str:
    return f"memory://review30b-{uuid.uuid4().hex}"


def _scrape(collector: TopicCollector) -> list[str]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_an_async_broker_topics_is_refused() -> None:
    url = _url()

    async def make() -> None:
        async with brokerkit.aio.connect(url) as listing:
            with (
                brokerkit.connect(url) as broker,
                pytest.raises(brokerkit.InvalidOption, match=r"async|coroutine"),
            ):
                TopicCollector(broker, listing.topics)  # type: ignore[arg-type]

    asyncio.run(make())


def test_an_async_def_is_refused() -> None:
    async def names() -> list[str]:
        return ["orders"]

    with (
        brokerkit.connect(_url()) as broker,
        pytest.raises(brokerkit.InvalidOption, match=r"async|coroutine"),
    ):
        TopicCollector(broker, names)  # type: ignore[arg-type]


@pytest.mark.parametrize("one", ["orders", b"orders"], ids=["str", "bytes"])
def test_a_callable_returning_one_name_is_a_failed_listing(
    one: object, caplog: pytest.LogCaptureFixture
) -> None:
    answers: list[object] = [["orders"], one]

    def names() -> Iterable[str]:
        return answers.pop(0)  # type: ignore[return-value]

    with brokerkit.connect(_url()) as broker:
        broker.publish("orders", 1)
        collector = TopicCollector(broker, names)
        first = _scrape(collector)
        assert 'brokerkit_topic_up{topic="orders"} 1.0' in first
        with caplog.at_level(logging.WARNING, logger="brokerkit"):
            second = _scrape(collector)
    assert "brokerkit_topics_listed 0.0" in second
    # the topics of the last listing are reported down; no letters
    assert 'brokerkit_topic_up{topic="orders"} 0.0' in second
    assert not [line for line in second if 'topic="o"' in line or 'topic="s"' in line]
    (record,) = [r for r in caplog.records if "could not list" in r.getMessage()]
    assert "'orders'" in record.getMessage() and record.exc_info is None


def test_a_callable_returning_a_coroutine_is_a_failed_listing_not_a_warning() -> None:
    url = _url()

    async def make() -> list[str]:
        async with brokerkit.aio.connect(url) as listing:
            with brokerkit.connect(url) as broker:
                collector = TopicCollector(broker, lambda: listing.topics())  # type: ignore[arg-type,return-value]
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    scrape = _scrape(collector)
                    gc.collect()
                assert not [w for w in caught if "never awaited" in str(w.message)]
                return scrape

    assert "brokerkit_topics_listed 0.0" in asyncio.run(make())


def test_a_callable_returning_a_list_is_still_read() -> None:
    with brokerkit.connect(_url()) as broker:
        broker.publish("orders", 1)
        scrape = _scrape(TopicCollector(broker, broker.topics))
    assert "brokerkit_topics_listed 1.0" in scrape
    assert 'brokerkit_topic_length{topic="orders"} 1.0' in scrape
