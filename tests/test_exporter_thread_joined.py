"""``brokerkit exporter`` stops with nothing of its own left running: the thread that
connects to the broker in the background is joined (within ``CONNECT_WAIT`` seconds:
a connect that outlasts that does not hold up the stop), the broker it connected is
closed, and so is the port it served on.

Before, the stop closed the broker it had but left the connect thread running: against
a broker that is down, for as long as the backend kept trying; against one slow to
answer, until it did (its broker then closed by that thread, after the stop).
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import RedisTarget
from tests.proxies import BlackHole

pytest.importorskip("typer")
pytest.importorskip("prometheus_client")
pytest.importorskip("kombu")

from brokerkit.cli import _exporter as exporter_module
from brokerkit.cli._admin import Interrupt, stop_on_interrupt

#: The deadline of every wait of these tests.
WAIT = 30.0


def _free_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _until(condition: Callable[[], Any], what: str, wait: float = WAIT) -> Any:
    """Poll ``condition`` until it is true, within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    poll = threading.Event()
    while not (found := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {wait} s")
        poll.wait(0.02)
    return found


#: The name of the exporter's connect thread.
CONNECT = "brokerkit-exporter-connect"


def _new(before: set[threading.Thread], name: str) -> list[threading.Thread]:
    """The threads called ``name`` alive now that were not before."""
    return [t for t in threading.enumerate() if t.name == name and t.is_alive() and t not in before]


class Running:
    """An exporter running in a thread of the test: :meth:`stop` stops it as SIGTERM
    would, and returns once the command has returned."""

    def __init__(self, runner: threading.Thread, stop: Interrupt, port: int) -> None:
        self.runner = runner
        self._stop = stop
        self.port = port
        self.error: BaseException | None = None

    def scrape(self) -> str | None:
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as answer:
                return str(answer.read().decode())
        except OSError:
            return None

    def stop(self) -> float:
        """Stop it; how long the command took to return."""
        started = time.monotonic()
        self._stop.set()
        self.runner.join(WAIT)
        assert not self.runner.is_alive(), "the exporter did not return"
        if self.error is not None:
            raise self.error
        return time.monotonic() - started


@contextmanager
def _running(
    monkeypatch: pytest.MonkeyPatch, url: str, only: list[str] | None = None
) -> Iterator[Running]:
    """The exporter of ``url`` (the topic ``orders`` unless ``only`` says), started and
    listening (not scraped: a scrape's reading of the broker is the collector's thread)."""
    stops: list[Interrupt] = []

    @contextmanager
    def recorded() -> Iterator[Interrupt]:
        with stop_on_interrupt() as stop:  # in a thread: no signal handlers
            stops.append(stop)
            yield stop

    monkeypatch.setattr(exporter_module, "stop_on_interrupt", recorded)
    port = _free_port()
    running: Running | None = None

    def run() -> None:
        try:
            topics = ["orders"] if only is None else only
            exporter_module.exporter(url, port=port, only=topics or None, timeout=1.0)
        except BaseException as exc:
            if running is not None:
                running.error = exc

    runner = threading.Thread(target=run, name="test-exporter-runner", daemon=True)
    runner.start()
    (stop,) = _until(lambda: stops, "the exporter never started")
    running = Running(runner, stop, port)
    try:
        _until(lambda: not _refused(port), "the exporter never listened")
        yield running
    finally:
        if runner.is_alive():
            stop.set()
            runner.join(WAIT)


def _threads_left(
    before: set[threading.Thread], others: Iterable[threading.Thread] = ()
) -> list[str]:
    """The names of the threads alive now that were not before (the runner and
    ``others``, the test's own, aside)."""
    mine = set(others)
    return sorted(
        t.name
        for t in threading.enumerate()
        if t not in before and t not in mine and t.is_alive() and t.name != "test-exporter-runner"
    )


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


class _Slow(BlackHole):
    """A TCP proxy to ``target`` that answers nothing on a connection for ``hold``
    seconds (a server slow to answer), then forwards it; it counts the connections
    that have ended (:attr:`ended`: the client closed them)."""

    def __init__(self, target: tuple[str, int], hold: float) -> None:
        self.hold = hold
        self.arrived = 0
        self.ended = 0
        self._count = threading.Lock()
        super().__init__(target)

    def serve(self, client: socket.socket) -> None:
        self.arrived += 1
        self.spawn(self._slow, client)

    def _slow(self, client: socket.socket) -> None:
        if self._closed.wait(self.hold):  # (a slow server, not the test's synchronisation)
            return
        upstream = socket.create_connection(self._target)
        self.keep(upstream)
        try:
            self._pipe(client, upstream)
        finally:
            with self._count:
                self.ended += 1


def _amqp_down(reconnect_timeout: float) -> str:
    """A kombu+amqp URL of a closed local port: its connect keeps trying (with
    backoff) for ``reconnect_timeout`` seconds."""
    return (
        f"kombu+amqp://guest:guest@127.0.0.1:{_free_port()}/"
        f"?reconnect_timeout={reconnect_timeout:g}"
    )


def _connecting(before: set[threading.Thread]) -> threading.Thread:
    """The exporter's connect thread (once it has started), of those not in ``before``."""
    found: list[threading.Thread] = _until(
        lambda: _new(before, CONNECT), "the connect thread never started"
    )
    (thread,) = found
    return thread


def test_the_connect_thread_still_trying_a_broker_down_is_joined_at_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = set(threading.enumerate())
    # Trying for 2 s, well within the stop's wait for it (CONNECT_WAIT, 5 s).
    with _running(monkeypatch, _amqp_down(2)) as running:
        connecting = _connecting(before)
        running.stop()
        assert not connecting.is_alive(), "the connect thread is left running"
        assert _threads_left(before) == []
        assert _refused(running.port), "the exporter's port still takes connections"


def test_a_connect_outlasting_the_wait_does_not_hold_up_the_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exporter_module, "CONNECT_WAIT", 0.2)
    before = set(threading.enumerate())
    connecting: threading.Thread | None = None
    try:
        with _running(monkeypatch, _amqp_down(3)) as running:
            connecting = _connecting(before)
            took = running.stop()
            assert took < 2.5, f"the stop took {took:.1f} s"
            assert connecting.daemon  # left to end on its own: it never holds up the exit
    finally:  # nothing left for the tests after this one
        if connecting is not None:
            _until(lambda: not connecting.is_alive(), "the connect thread never ended", 15)


@pytest.fixture(params=["memory", "redis+stream"])
def reachable(request: pytest.FixtureRequest, prefix: str) -> str:
    if request.param == "memory":
        return "memory://"
    target: RedisTarget = request.getfixturevalue("redis_target")
    return target.url("redis+stream", prefix=prefix)


def test_a_broker_that_answers_is_closed_and_no_thread_is_left(
    monkeypatch: pytest.MonkeyPatch, reachable: str
) -> None:
    before = set(threading.enumerate())
    with _running(monkeypatch, reachable) as running:
        _until(
            lambda: 'brokerkit_topic_up{topic="orders"} 1.0' in (running.scrape() or ""),
            "the topic is never up",
        )
        # The scrape's reading of the broker, in a thread of the collector, ends.
        _until(lambda: not _new(before, "brokerkit-topic-collector"), "a reading never ended")
        running.stop()
        assert _threads_left(before) == []
        assert _refused(running.port), "the exporter's port still takes connections"


def test_a_connect_under_way_to_a_slow_broker_is_joined_and_its_broker_closed(
    monkeypatch: pytest.MonkeyPatch, redis_target: RedisTarget, prefix: str
) -> None:
    """Redis answering 2 s late: the stop waits for the connect (listing its topics)
    under way, and the broker it makes is closed before the stop returns."""
    proxy = _Slow((redis_target.host, redis_target.port), hold=2.0)
    before = set(threading.enumerate())
    url = f"redis+stream://127.0.0.1:{proxy.port}/{redis_target.db}?prefix={prefix}"
    try:
        with _running(monkeypatch, url, only=[]) as running:  # every topic: listed
            connecting = _connecting(before)
            _until(lambda: proxy.arrived, "the exporter never connected")
            running.stop()
            assert not connecting.is_alive(), "the connect thread is left running"
            assert _threads_left(before, proxy._threads) == []
            _until(lambda: proxy.ended == proxy.arrived, "a connection of the broker is open")
    finally:
        proxy.close()
