"""A Redis outage is logged once per broker (review 37).

Killing the server while a consumer waited in ``receive`` and a publisher ran wrote no
brokerkit log record at all (the recovery itself was fine), though docs/observability.md
says ``brokerkit.redis`` logs reconnection. Now a broker's first call that retries says
so at WARNING (what was lost, the error, for how long it retries), and its first call
that succeeds after it at INFO (after how long): two records for the outage, however
many calls and retries ride it out, and neither shows the password.

A call is known to be retrying once it asks for its backoff (a spy on the pure
function the retry loop asks); the server is started again (same port, same user,
given on its command line) only after several retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

import brokerkit
import brokerkit.aio
import brokerkit.backends.redis._client
import brokerkit.backends.redis._client_async
from brokerkit.backends.redis import _connection
from tests.redis_server import RedisServer
from tests.waiting import call_in_thread, wait_until

PASSWORD = "s3cret-outage-pw"
#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 30.0
#: Retries (of any call of the broker) before the server comes back.
RETRIES = 4


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno == level]


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


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per backoff a Reconnector asked for (a call failed and will retry)."""
    asked: list[int] = []

    def spy(attempt: int, base: float, cap: float) -> float:
        asked.append(attempt)
        return _connection.backoff_delay(attempt, base, cap)

    for module in (brokerkit.backends.redis._client, brokerkit.backends.redis._client_async):
        monkeypatch.setattr(module, "backoff_delay", spy)
    return asked


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private server with a password user that a restart keeps (its command line)."""
    user = ("--user", "bk-outage", "on", f">{PASSWORD}", "~*", "&*", "+@all")
    with RedisServer(config=user) as started:
        yield started


def _url(server: RedisServer, scheme: str, prefix: str) -> str:
    return (
        f"{scheme}://bk-outage:{PASSWORD}@127.0.0.1:{server.port}/0"
        f"?prefix={prefix}&reconnect_timeout=60"
    )


def _check_logged(records: _Records, scheme: str, server: RedisServer) -> None:
    warnings = [r for r in records.at(logging.WARNING) if r.name == "brokerkit.redis"]
    infos = [r for r in records.at(logging.INFO) if r.name == "brokerkit.redis"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert len(infos) == 1, [r.getMessage() for r in infos]
    lost, back = warnings[0].getMessage(), infos[0].getMessage()
    where = f"{scheme}://bk-outage:***@127.0.0.1:{server.port}/0"
    assert lost.startswith(f"lost the connection to Redis at {where}"), lost
    assert "retrying for up to 60 s (reconnect_timeout)" in lost
    assert back.startswith(f"Redis at {where}") and "answers again, after" in back, back
    for record in records.records:
        assert PASSWORD not in record.getMessage()
        assert hasattr(record, "topic")  # the structured fields (extra=log_fields(...))
    assert warnings[0].topic is None and infos[0].topic is None  # (the broker's, no topic's)


@pytest.mark.parametrize("scheme", ["redis+stream", "redis+list", "redis+pubsub"])
def test_an_outage_is_logged_once_as_lost_and_once_as_back(
    server: RedisServer, records: _Records, retries: list[int], prefix: str, scheme: str
) -> None:
    with brokerkit.connect(_url(server, scheme, prefix)) as broker:
        subscription = broker.subscribe("jobs")
        broker.publish("jobs", "before")  # the server was reached: its loss is ridden out
        first = subscription.receive(timeout=5)
        assert first is not None
        first.ack()
        received: list[brokerkit.Delivery | None] = []
        consumer, consumer_raised = call_in_thread(
            lambda: received.append(subscription.receive(timeout=GUARD + 30))
        )
        server.kill()
        publisher, publisher_raised = call_in_thread(
            lambda: [broker.publish("jobs", f"during-{i}") for i in range(3)]
        )
        wait_until(lambda: len(retries) >= RETRIES, "the calls' retries", GUARD)
        server.start()
        publisher.join(GUARD)

        def nudged() -> bool:  # (pub/sub: what was published before it resubscribed is gone)
            if not received:
                broker.publish("jobs", "nudge")
            return bool(received)

        wait_until(nudged, "the consumer's delivery", GUARD)
        consumer.join(GUARD)
        assert not publisher.is_alive() and not consumer.is_alive()
        assert publisher_raised == [] and consumer_raised == []
        assert received[0] is not None
        received[0].ack()
        wait_until(lambda: records.at(logging.INFO), "the INFO that Redis answers again", GUARD)
        broker.publish("jobs", "after")  # no more records: the outage is over
    _check_logged(records, scheme, server)


def test_the_asyncio_broker_logs_an_outage_once_too(
    server: RedisServer, records: _Records, retries: list[int], prefix: str
) -> None:
    scheme = "redis+stream"

    async def main() -> None:
        async with brokerkit.aio.connect(_url(server, scheme, prefix)) as broker:
            await broker.publish("jobs", "before")
            server.kill()
            publishes = [
                asyncio.ensure_future(broker.publish("jobs", f"during-{i}")) for i in range(3)
            ]
            give_up_at = asyncio.get_running_loop().time() + GUARD
            while len(retries) < RETRIES:
                assert asyncio.get_running_loop().time() < give_up_at, f"{retries} retries"
                await asyncio.wait(publishes, timeout=0.05)  # (they retry meanwhile)
                assert not any(p.done() for p in publishes)
            await asyncio.to_thread(server.start)
            await asyncio.wait_for(asyncio.gather(*publishes), GUARD)
            await broker.publish("jobs", "after")

    asyncio.run(main())
    _check_logged(records, scheme, server)
