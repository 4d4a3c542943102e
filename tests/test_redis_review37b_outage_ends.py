"""An outage's log records end with the outage, whatever ends it (review 37, second round).

Once a call gave up at ``reconnect_timeout``, the broker's outage stayed open for
ever: on redis+list (whose first attempt of a call is no retry loop's) no INFO came
when Redis answered again, and each later outage of the broker logged nothing at all;
on every backend the entry stayed after the broker's close (one a broker). Now the
last call of an outage to give up ends it, with one INFO that brokerkit gave up
waiting, and the next outage logs its own WARNING. A pool at its cap
(``max_connections``: "Too many connections") is no outage: it logged "lost the
connection to Redis" and "answers again" while the server answered every other call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import brokerkit
import brokerkit.backends.redis._client
from brokerkit.backends.redis import _connection, _outages
from brokerkit.exceptions import ConnectionFailed
from tests.redis_server import RedisServer
from tests.waiting import call_in_thread, wait_until

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 30.0


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def outage(self) -> list[tuple[str, str]]:
        """The outage records: (level, the start of the message)."""
        said = []
        for r in self.records:
            message = r.getMessage()
            if r.name == "brokerkit.redis" and r.levelno in (logging.WARNING, logging.INFO):
                said.append((r.levelname, message))
        return said


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("brokerkit")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _kept(broker: brokerkit.Broker) -> bool:
    """Whether an outage of ``broker`` is kept (by its close signal, which its calls
    share)."""
    return id(broker._close_signal) in _outages._outages


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_an_outage_a_call_gave_up_on_ends_and_the_next_is_logged_again(
    server: RedisServer, records: _Records, prefix: str, scheme: str
) -> None:
    url = f"{scheme}://127.0.0.1:{server.port}/0?prefix={prefix}&reconnect_timeout=1.5"
    with brokerkit.connect(url) as broker:
        broker.publish("jobs", "before")
        for _ in range(2):
            server.kill()
            with pytest.raises(ConnectionFailed):
                broker.publish("jobs", "during")  # retries, then gives up
            server.start()
            for _ in range(3):
                broker.publish("jobs", "after")
        broker.purge("jobs")
    said = records.outage()
    levels = [level for level, _ in said]
    assert levels == ["WARNING", "INFO", "WARNING", "INFO"], said
    for level, message in said:
        if level == "WARNING":
            assert message.startswith("lost the connection to Redis at"), message
        else:
            assert message.startswith("gave up waiting for Redis at"), message
    assert not _kept(broker)  # nothing kept of them


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_no_outage_is_kept_after_the_close_of_a_broker_that_gave_up(
    server: RedisServer, prefix: str, scheme: str
) -> None:
    url = f"{scheme}://127.0.0.1:{server.port}/0?prefix={prefix}&reconnect_timeout=1.5"
    for _ in range(3):
        broker = brokerkit.connect(url)
        try:
            broker.publish("jobs", "before")
            broker.purge("jobs")
            server.kill()
            with pytest.raises(ConnectionFailed):
                broker.publish("jobs", "during")
        finally:
            broker.close()
        assert not _kept(broker)
        server.start()


def test_a_pool_at_its_cap_is_no_outage(
    server: RedisServer, records: _Records, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    retries: list[int] = []

    def spy(attempt: int, base: float, cap: float) -> float:
        retries.append(attempt)
        return _connection.backoff_delay(attempt, base, cap)

    monkeypatch.setattr(brokerkit.backends.redis._client, "backoff_delay", spy)
    url = f"redis+list://127.0.0.1:{server.port}/0?prefix={prefix}&max_connections=2"
    with brokerkit.connect(url) as broker:
        broker.publish("jobs", "before")
        pool = broker._client.connection_pool  # type: ignore[attr-defined]
        held = [pool.get_connection(), pool.get_connection()]  # the pool is at its cap
        try:
            publisher, raised = call_in_thread(lambda: broker.publish("jobs", "capped"))
            wait_until(lambda: len(retries) >= 3, "the publish's retries", GUARD)
        finally:
            for connection in held:
                pool.release(connection)
        publisher.join(GUARD)
        assert not publisher.is_alive() and raised == []
        broker.publish("jobs", "after")
        assert broker.purge("jobs") == 3
    assert records.outage() == []
    assert not _kept(broker)
