"""``brokerkit exporter`` with a broker it cannot reach yet (review 5 of the command
line, finding 7): it starts and serves ``brokerkit_topic_up 0``, connecting (again) on
the scrapes that follow, as docs/observability.md describes, on every backend.

Before: on kombu+amqp, which connects when the broker is made, the exporter did not
serve at all and exited 1 after ``reconnect_timeout`` ("cannot connect ... within
reconnect_timeout"); on Redis without ``--topic`` it exited 1 at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

import brokerkit
from tests.kombu_rabbitmq import kombu_broker, rabbitmq  # noqa: F401 (fixtures)
from tests.proxies import BlackHole
from tests.redis_server import RedisServer

pytest.importorskip("typer")
pytest.importorskip("prometheus_client")

WAIT = 30.0


class _Gate(BlackHole):
    """A TCP proxy to ``target`` that turns every connection away (closes it at once)
    until :attr:`open` is set, as a server that is down; then forwards."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.open = threading.Event()
        super().__init__(target)

    def serve(self, client: socket.socket) -> None:
        if not self.open.is_set():
            client.close()
            return
        super().serve(client)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _exporter(*argv: str) -> Iterator[tuple[subprocess.Popen[str], Callable[[], str | None]]]:
    """The exporter in a child process, and ``scrape()``: /metrics, or None while
    nothing answers on its port."""
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "brokerkit.cli", "exporter", *argv, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300"},
    )

    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                return str(r.read().decode())
        except OSError:
            return None

    try:
        yield child, scrape
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
        if child.stderr is not None:
            child.stderr.close()


def _until(child: subprocess.Popen[str], scrape: Callable[[], str | None], *needles: str) -> str:
    """Scrape until every needle is in the answer (the scrapes are what the test
    observes, each answering at once or within the exporter's --timeout)."""
    deadline = time.monotonic() + WAIT
    seen: str | None = None
    while time.monotonic() < deadline:
        if child.poll() is not None:
            err = child.stderr.read() if child.stderr is not None else ""
            pytest.fail(f"the exporter exited {child.returncode}: {err}")
        seen = scrape()
        if seen is not None and all(needle in seen for needle in needles):
            return seen
        time.sleep(0.1)  # the next scrape, as Prometheus would (not synchronisation)
    pytest.fail(f"no {needles} in the scrapes within {WAIT} s; last: {seen}")


def test_the_exporter_serves_rabbitmq_down_then_up(
    kombu_broker: Callable[..., Any],  # noqa: F811
) -> None:
    broker = kombu_broker()
    broker.publish_many("orders", [1, 2])
    real = urlsplit(broker.url.render(hide_password=False))
    gate = _Gate((real.hostname or "127.0.0.1", real.port or 5672))
    try:
        url = (
            f"kombu+amqp://{real.username}:{real.password}@127.0.0.1:{gate.port}/"
            f"?prefix={broker.options.prefix}&reconnect_timeout=2"
        )
        with _exporter(url, "-t", "orders", "--timeout", "1") as (child, scrape):
            _until(child, scrape, 'brokerkit_topic_up{topic="orders"} 0.0')
            gate.open.set()  # the broker comes up
            _until(
                child,
                scrape,
                'brokerkit_topic_up{topic="orders"} 1.0',
                'brokerkit_topic_length{topic="orders"} 2.0',
            )
            child.send_signal(signal.SIGTERM)
            assert child.wait(WAIT) == 143
    finally:
        gate.close()


def test_the_exporter_lists_redis_once_it_answers() -> None:
    """Every topic (no --topic): listed 0 while Redis is down, then its topics."""
    server = RedisServer()  # not started yet: its port refuses connections
    url = server.url("redis+stream")
    try:
        with _exporter(url, "--timeout", "1") as (child, scrape):
            _until(child, scrape, "brokerkit_topics_listed 0.0")
            server.start()
            with brokerkit.connect(url) as broker:
                broker.publish("orders", 1)
            _until(
                child,
                scrape,
                "brokerkit_topics_listed 1.0",
                'brokerkit_topic_length{topic="orders"} 1.0',
            )
    finally:
        server.stop()


def test_the_exporter_refuses_at_once_to_list_a_backend_that_cannot() -> None:
    """Without --topic on a backend that can never list its topics (kombu+amqp), the
    exporter says so at once, whether or not the broker is up: it used to serve
    "nothing listed" while the broker was down, then exit when it came up."""
    port = _free_port()  # nothing listens there: the broker is down
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "brokerkit.cli",
            "exporter",
            f"kombu+amqp://guest:guest@127.0.0.1:{port}//",
        ],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert done.returncode == 1, done.stderr
    assert "cannot list its topics: name them with --topic" in done.stderr
    assert "serving" not in done.stderr
