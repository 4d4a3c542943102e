"""A topic named twice is reported once: by :class:`TopicCollector` (given a list, or a
callable that lists it twice), by ``brokerkit exporter -t orders -t orders`` and by
``brokerkit topics -t orders -t orders``; each sample once, each topic inspected once
per scrape. (Before, every ``brokerkit_topic_*{topic="orders"}`` sample came twice, a
duplicated series to Prometheus, and the topic was inspected twice per scrape.)"""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("typer")
pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest

import brokerkit
from brokerkit.cli import _exporter as exporter_module
from brokerkit.cli._admin import Interrupt, stop_on_interrupt
from brokerkit.cli._app import run
from brokerkit.instrumentation.prometheus import TopicCollector
from tests.waiting import wait_until


class Counted:
    """A broker's ``inspect`` and ``url``, counting the inspects of each topic."""

    def __init__(self, broker: brokerkit.Broker) -> None:
        self._broker = broker
        self.url = broker.url
        self.inspected: dict[str, int] = {}

    def inspect(self, topic: str) -> Any:
        self.inspected[topic] = self.inspected.get(topic, 0) + 1
        return self._broker.inspect(topic)


def _samples(text: str, topic: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if line.startswith("brokerkit_topic_") and f'topic="{topic}"' in line
    ]


@pytest.fixture
def held() -> Iterator[tuple[str, brokerkit.Broker]]:
    url = f"memory://obs26-dup-{uuid.uuid4().hex}"
    with brokerkit.connect(url) as broker:
        broker.publish("orders", 1)
        broker.publish("audit", 2)
        yield url, broker


@pytest.mark.parametrize("given", ["list", "callable"])
def test_the_collector_reports_a_topic_named_twice_once(
    held: tuple[str, brokerkit.Broker], given: str
) -> None:
    _, broker = held
    counted = Counted(broker)
    names = ["orders", "audit", "orders"]
    topics: Any = names if given == "list" else (lambda: names)
    registry = CollectorRegistry()
    registry.register(TopicCollector(counted, topics))
    text = generate_latest(registry).decode()
    assert _samples(text, "orders").count('brokerkit_topic_length{topic="orders"} 1.0') == 1
    assert len(_samples(text, "orders")) == len(set(_samples(text, "orders")))
    assert counted.inspected == {"orders": 1, "audit": 1}


def test_topics_given_twice_lists_each_once(
    held: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = held
    assert run(["topics", url, "-t", "orders", "-t", "audit", "-t", "orders", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["topic"] for row in rows] == ["orders", "audit"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


@contextmanager
def _exporter(monkeypatch: pytest.MonkeyPatch, *argv: str) -> Iterator[Callable[[], str | None]]:
    """``brokerkit exporter *argv`` run in a thread of the test; yields its scrape."""
    stops: list[Interrupt] = []
    results: list[int] = []

    @contextmanager
    def recorded() -> Iterator[Interrupt]:
        with stop_on_interrupt() as stop:  # in a thread: no signal handlers
            stops.append(stop)
            yield stop

    monkeypatch.setattr(exporter_module, "stop_on_interrupt", recorded)
    port = _free_port()
    runner = threading.Thread(
        target=lambda: results.append(run(["exporter", *argv, "--port", str(port)])),
        name="test-obs26-exporter",
        daemon=True,
    )
    runner.start()
    wait_until(lambda: stops or results, "the exporter's start")
    try:
        yield lambda: _scrape(port)
    finally:
        for stop in stops:
            stop.set()
        runner.join(30)
    assert not runner.is_alive(), "the exporter did not return"


def test_the_exporter_serves_a_topic_given_twice_once(
    held: tuple[str, brokerkit.Broker], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = held
    with _exporter(monkeypatch, url, "-t", "orders", "-t", "orders") as scrape:
        found: list[str] = []

        def up() -> bool:
            text = scrape()
            found[:] = _samples(text or "", "orders")
            return 'brokerkit_topic_up{topic="orders"} 1.0' in found

        wait_until(up, "the topic served up")
    assert found.count('brokerkit_topic_length{topic="orders"} 1.0') == 1
    assert len(found) == len(set(found)), found
