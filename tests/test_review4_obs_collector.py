"""TopicCollector against a server that goes away: every topic it knows is reported
down, a listing that failed says so, and a scrape does not wait on every topic in turn
(nor on a server that does not answer); two collectors on one registry are refused."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from prometheus_client import CollectorRegistry, generate_latest

import brokerkit
from brokerkit.cli._app import run
from brokerkit.instrumentation.prometheus import TopicCollector
from tests.redis_server import RedisServer
from tests.waiting import wait_until

TOPICS = ("a", "b", "c")


def scrape(registry: CollectorRegistry) -> dict[str, float | None]:
    """One scrape: ``up`` of each topic, and ``listed``."""
    text = generate_latest(registry).decode()
    assert text  # (generate_latest runs every collector once)
    samples: dict[str, float | None] = {}
    for line in text.splitlines():
        if line.startswith("brokerkit_topic_up{"):
            topic = line.split('topic="', 1)[1].split('"', 1)[0]
            samples[topic] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("brokerkit_topics_listed "):
            samples["listed"] = float(line.rsplit(" ", 1)[1])
    return samples


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[brokerkit.Broker]:
    url = redis_server.url("redis+list")
    opened = brokerkit.connect(f"{url}?prefix=obs-{uuid.uuid4().hex[:12]}&reconnect_timeout=0.3")
    try:
        for topic in TOPICS:
            opened.publish(topic, 1)
        yield opened
    finally:
        redis_server.thaw()
        opened.close()


def test_a_listing_that_fails_reports_the_topics_last_listed_down(
    broker: brokerkit.Broker, redis_server: RedisServer
) -> None:
    registry = CollectorRegistry()
    registry.register(TopicCollector(broker, broker.topics))
    assert scrape(registry) == {"a": 1, "b": 1, "c": 1, "listed": 1}
    redis_server.kill()
    assert scrape(registry) == {"a": 0, "b": 0, "c": 0, "listed": 0}


def test_named_topics_have_no_listing_gauge_and_one_connection_failure_ends_the_scrape(
    broker: brokerkit.Broker, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    registry.register(TopicCollector(broker, TOPICS))
    assert scrape(registry) == {"a": 1, "b": 1, "c": 1}
    redis_server.kill()
    with caplog.at_level(logging.WARNING, logger="brokerkit.instrumentation"):
        assert scrape(registry) == {"a": 0, "b": 0, "c": 0}
    failed = [r.getMessage() for r in caplog.records if "could not inspect" in r.getMessage()]
    assert len(failed) == 1, failed  # the other topics were not tried against a dead server
    assert any("not inspected" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("listing", [True, False])
def test_a_scrape_answers_within_its_timeout_while_the_server_does_not(
    broker: brokerkit.Broker, redis_server: RedisServer, listing: bool
) -> None:
    registry = CollectorRegistry()
    topics = broker.topics if listing else TOPICS
    registry.register(TopicCollector(broker, topics, timeout=0.5))
    assert scrape(registry)["a"] == 1
    redis_server.freeze()  # connections stay open, nothing answers
    down = scrape(registry)
    assert down == ({"a": 0, "b": 0, "c": 0, "listed": 0} if listing else dict.fromkeys(TOPICS, 0))
    redis_server.thaw()
    wait_until(lambda: scrape(registry)["a"] == 1, "a scrape that counts 'a' again")


def test_two_collectors_on_one_registry_are_refused_at_registration() -> None:
    registry = CollectorRegistry()
    with (
        brokerkit.connect(f"memory://obs-{uuid.uuid4().hex}") as one,
        brokerkit.connect(f"memory://obs-{uuid.uuid4().hex}") as other,
    ):
        registry.register(TopicCollector(one, one.topics))
        with pytest.raises(ValueError, match="brokerkit_topic_up"):
            registry.register(TopicCollector(other, other.topics))


@given(
    timeout=st.one_of(
        st.floats(max_value=0),
        st.just(math.inf),
        st.just(math.nan),
        st.text(max_size=3),
        st.just(True),
    )
)
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(timeout: object) -> None:
    with (
        brokerkit.connect("memory://obs-timeout") as broker,
        pytest.raises(brokerkit.InvalidOption, match="timeout"),
    ):
        TopicCollector(broker, (), timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", ["0", "-1", "inf", "nan"])
def test_the_exporter_refuses_a_timeout_that_is_not_a_positive_number_of_seconds(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["exporter", "memory://", "--timeout", timeout, "--port", "9"]) == 2
    assert "--timeout" in capsys.readouterr().err
