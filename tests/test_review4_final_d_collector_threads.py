"""TopicCollector against a frozen server (SIGSTOP): a scrape starts no new reading
while the one before still waits on the server, so readers never pile up; its topics
are reported down (and the listing failed) until the server answers again."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from prometheus_client import CollectorRegistry

import brokerkit
from brokerkit.instrumentation.prometheus import TopicCollector
from tests.redis_server import RedisServer
from tests.test_review4_obs_collector import TOPICS, scrape
from tests.waiting import wait_until


def readers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "brokerkit-topic-collector")


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[brokerkit.Broker]:
    url = redis_server.url("redis+list")
    opened = brokerkit.connect(f"{url}?prefix=obs-{uuid.uuid4().hex[:12]}&reconnect_timeout=30")
    try:
        for topic in TOPICS:
            opened.publish(topic, 1)
        yield opened
    finally:
        redis_server.thaw()
        opened.close()


@pytest.mark.parametrize("listing", [True, False])
def test_scrapes_of_a_frozen_server_leave_at_most_one_reader(
    broker: brokerkit.Broker, redis_server: RedisServer, listing: bool
) -> None:
    registry = CollectorRegistry()
    registry.register(TopicCollector(broker, broker.topics if listing else TOPICS, timeout=0.2))
    up = {"a": 1, "b": 1, "c": 1} | ({"listed": 1} if listing else {})
    down = {"a": 0, "b": 0, "c": 0} | ({"listed": 0} if listing else {})
    assert scrape(registry) == up
    wait_until(lambda: readers() == 0, "no collector reader thread left")
    redis_server.freeze()
    try:
        for _ in range(6):
            assert scrape(registry) == down
            assert readers() <= 1
    finally:
        redis_server.thaw()
    wait_until(lambda: scrape(registry) == up, "a scrape that finds every topic up")
    wait_until(lambda: readers() == 0, "no collector reader thread left")
