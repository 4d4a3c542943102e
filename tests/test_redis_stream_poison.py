"""redis+stream against a real redis-server: a poison message that kills its consumer
process every time takes only itself to the dead-letter topic, and deliveries fetched
but never handed to the application reach a handler, with no attempt counted for
a hand-back."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit.aio
from brokerkit.backends.redis.stream import RedisStreamBroker
from tests.conftest import RedisTarget
from tests.poison_worker import supervise
from tests.redis_stream_aio_support import PROMPT, receive_all, run

Make = Callable[..., RedisStreamBroker]


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


def test_a_poison_message_that_kills_its_consumer_takes_only_itself_to_the_dead_letters(
    make: Make, redis_target: RedisTarget, prefix: str
) -> None:
    vt = 0.5
    broker = make(visibility_timeout=vt, max_deliveries=3)
    broker.create_group("jobs", "workers")
    poison = broker.publish("jobs", "poison")
    good = broker.publish_many("jobs", [f"job-{i}" for i in range(9)])
    url = redis_target.url("redis+stream", prefix=prefix)
    # Until a run ends on its own (idle for 3 visibility timeouts): the poison message
    # is gone and nothing is left.
    handled, kills = supervise(url, vt, idle=3 * vt, group="workers")
    assert kills == 3, "the poison message was handed out max_deliveries times"
    assert sorted(handled) == sorted(good), "every batch mate of the poison reached a handler"
    dead = broker.subscribe(broker.dead_letter_topic("jobs"))
    letter = dead.receive(timeout=PROMPT)
    assert letter is not None
    assert (letter.id, letter.headers["x-dead-letter-reason"]) == (poison, "max_deliveries")
    letter.ack()
    assert dead.receive(timeout=0.2) is None, "only the poison message was dead-lettered"
    # Fetched once with the poison and never handed out, then each on its own: one
    # attempt more than the handlers saw, at most.
    assert set(handled.values()) <= {2}
    assert broker.inspect("jobs").in_flight == 0


def test_deliveries_a_closed_subscription_never_returned_come_back_with_no_attempt_counted(
    make: Make,
) -> None:
    first, other = make(visibility_timeout=60), make(visibility_timeout=60)
    ids = first.publish_many("jobs", range(5))
    subscription = first.subscribe("jobs", group="workers", prefetch=5)
    handed = subscription.receive(timeout=PROMPT)
    assert handed is not None
    assert subscription.buffered == 4
    subscription.close()  # hands the 4 back at once
    handed.ack()
    again = other.subscribe("jobs", group="workers", prefetch=5)
    got = [again.receive(timeout=PROMPT) for _ in range(4)]
    assert sorted(d.id for d in got if d is not None) == sorted(ids[1:])
    assert [(d.attempt, d.redelivered) for d in got if d is not None] == [(1, False)] * 4
    # A real second delivery of one of them still counts.
    got[0].nack(requeue=True)  # type: ignore[union-attr]
    back = again.receive(timeout=PROMPT)
    assert back is not None
    assert (back.id, back.attempt) == (got[0].id, 2)  # type: ignore[union-attr]
    other.ack(back, *got[1:])  # type: ignore[arg-type]


def test_an_async_hand_back_counts_no_attempt(redis_target: RedisTarget, prefix: str) -> None:
    url = redis_target.url("redis+stream", prefix=prefix)

    async def main() -> None:
        async with (
            brokerkit.aio.connect(url, visibility_timeout=60) as first,
            brokerkit.aio.connect(url, visibility_timeout=60) as other,
        ):
            ids = await first.publish_many("jobs", range(10))
            async for delivery in first.consume("jobs", prefetch=10):
                await delivery.ack()
                break  # leaving the loop hands the other 9 back
            got = await receive_all(await other.subscribe("jobs", prefetch=10), 9)
            assert sorted(d.id for d in got) == sorted(ids[1:])
            assert {d.attempt for d in got} == {1}
            await other.ack(*got)

    run(main())
