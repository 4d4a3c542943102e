"""The redis+stream poison reaper while its server is away: its rounds fail quietly
(one WARNING when they start failing, no ERROR, no traceback, never a line per round)
and it works again once the server is back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
from tests.redis_server import RedisServer
from tests.waiting import wait_until


@pytest.fixture
def durable_server() -> Iterator[RedisServer]:
    """A private server that keeps its data through a kill (the group survives)."""
    with RedisServer(appendonly=True) as server:
        yield server


def test_the_reaper_is_quiet_while_the_server_is_away(
    durable_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = durable_server.url("redis+stream")
    with brokerkit.connect(url, max_deliveries=1, visibility_timeout=0.2) as broker:
        rounds: list[BaseException | None] = []
        work = broker._reaper._work

        def counted() -> Any:
            try:
                result = work()
            except BaseException as exc:
                rounds.append(exc)
                raise
            rounds.append(None)
            return result

        broker._reaper._work = counted
        subscription = broker.subscribe("s")
        wait_until(lambda: None in rounds, "a successful round of the reaper", within=30.0)
        with caplog.at_level(logging.DEBUG, logger="brokerkit.redis"):
            durable_server.kill()
            seen = len(rounds)
            wait_until(
                lambda: len(rounds) >= seen + 3, "3 rounds while the server is away", within=30.0
            )
            failing = [r for r in caplog.records if r.levelno >= logging.INFO]
            durable_server.start()
            # Working again: an entry whose one allowed lease runs out is dead-lettered
            # by the reaper (nothing fetches the topic after this receive).
            broker.publish("s", "poison")
            assert subscription.receive(timeout=5) is not None
            broker._suspend_renewals()  # a consumer that hangs on it
            wait_until(
                lambda: broker.inspect("s.dlq").length == 1, "the dead-lettered entry", within=30.0
            )
            recovered = [
                r for r in caplog.records if r.getMessage().endswith("poison entries again")
            ]
        subscription.close()
    assert not [r for r in failing if r.levelno >= logging.ERROR or r.exc_info], [
        (r.levelname, r.getMessage()) for r in failing
    ]
    warnings = [r for r in failing if r.levelno == logging.WARNING]
    assert len(warnings) <= 1, [r.getMessage() for r in warnings]
    assert len(warnings) == 1 and "dead-letter" in warnings[0].getMessage()
    assert recovered, "the reaper never said it works again"
    assert all(r.levelno == logging.INFO for r in recovered)
