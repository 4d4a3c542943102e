"""redis+stream against a real redis-server: delayed retries parked in a group's pending
entries list (``nack(delay=...)``) never hold up the reclaim of other entries; the
background reaper pages through the whole list; a 'latest' group made again by the
fetch script gets the delayed publish that script released into the new stream; and
``body_field`` cannot take the dead letters' ``x-original-entry`` field."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.stream import RedisStreamBroker
from brokerkit.backends.redis.stream.lease_scripts import LOCATE_PAGE, REPARK_BUDGET
from brokerkit.backends.redis.stream.scheduling import PARKING
from brokerkit.exceptions import InvalidOption
from tests.conftest import RedisTarget
from tests.redis_stream_aio_support import PROMPT, run

Make = Callable[..., RedisStreamBroker]

#: Seconds a delayed retry may come out ahead of its due time, for the clock reads
#: of the test (the server keeps due times to the millisecond, rounded up).
SLACK = 0.05


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


def _idle(client: redis.Redis, key: str, idle_ms: int, consumer: str | None = None) -> int:
    """How many entries of group ``g`` (of ``consumer``) have been idle ``idle_ms``."""
    return len(client.xpending_range(key, "g", "-", "+", 100_000, consumer, idle_ms))


def _wait_idle(
    client: redis.Redis, key: str, idle_ms: int, count: int, consumer: str | None = None
) -> None:
    """Wait until ``count`` entries (of ``consumer``) are idle past ``idle_ms``."""
    deadline = time.monotonic() + PROMPT + idle_ms / 1000
    while _idle(client, key, idle_ms, consumer) < count:
        assert time.monotonic() < deadline, "the entries never went idle"
        time.sleep(0.02)  # polling with a deadline, not synchronisation


def _park(broker: RedisStreamBroker, topic: str, count: int, delay: float = 3600) -> list[str]:
    """``count`` delayed retries of group ``g``, parked ``delay`` seconds; their ids."""
    broker.publish_many(topic, [f"parked-{i}" for i in range(count)])
    ids: list[str] = []
    with broker.subscribe(topic, group="g", prefetch=500) as subscription:
        while len(ids) < count:
            first = subscription.receive(timeout=PROMPT)
            assert first is not None
            batch = [first]
            while subscription.buffered:
                more = subscription.receive(timeout=0)
                assert more is not None
                batch.append(more)
            broker.nack(*batch, delay=delay)
            ids += [d.id for d in batch]
    return ids


def _server_ms(client: redis.Redis) -> int:
    """The server's clock, in milliseconds (as due times are kept)."""
    now: Any = client.time()
    seconds, micros = now
    return int(seconds) * 1000 + int(micros) // 1000


def _crashed_holding_one(client: redis.Redis, key: str) -> bytes:
    """A consumer ``dead`` reads one new entry and is never heard of again."""
    reply: Any = client.xreadgroup("g", "dead", {key: ">"}, count=1)
    [[_, [(entry_id, _)]]] = reply
    return bytes(entry_id)


# -- parked delayed retries cost the reclaim nothing --------------------------------


def test_parked_retries_idle_past_the_lease_do_not_hold_up_a_dead_consumers_entry(
    make: Make, redis_client: redis.Redis
) -> None:
    """The first fetch after a crashed consumer's lease ran out claims its entry,
    however many delayed retries idle past the lease come before it (one fetch
    looked at ten of them before)."""
    vt = 0.3
    lease = int(vt * 1000)
    broker = make(visibility_timeout=vt)
    key = broker.stream_key("jobs")
    parked = 300
    _park(broker, "jobs", parked)
    _wait_idle(redis_client, key, lease, parked, PARKING)
    broker.publish("jobs", "x")
    _crashed_holding_one(redis_client, key)
    _wait_idle(redis_client, key, lease, 1, "dead")
    with broker.subscribe("jobs", group="g", prefetch=1) as subscription:
        delivery = subscription.receive(timeout=0)  # one fetch
        assert delivery is not None, "the dead consumer's entry waited behind parked retries"
        assert (delivery.body, delivery.attempt) == ("x", 2)
        delivery.ack()
        # The parked retries were parked again, none delivered before its time.
        assert subscription.receive(timeout=0) is None
    info = broker.inspect("jobs")
    assert (info.scheduled, info.in_flight) == (parked, 0)
    assert len(redis_client.xpending_range(key, "g", "-", "+", 1000, PARKING)) == parked


def test_a_requeued_entry_is_claimed_by_the_next_fetch_past_idle_parked_retries(
    make: Make, redis_client: redis.Redis
) -> None:
    vt = 0.3
    broker = make(visibility_timeout=vt)
    key = broker.stream_key("jobs")
    parked = 300
    _park(broker, "jobs", parked)
    _wait_idle(redis_client, key, int(vt * 1000), parked, PARKING)
    with (
        broker.subscribe("jobs", group="g") as one,
        broker.subscribe("jobs", group="g") as other,
    ):
        broker.publish("jobs", "y")
        delivery = one.receive(timeout=PROMPT)
        assert delivery is not None and delivery.body == "y"
        delivery.nack(requeue=True)
        again = other.receive(timeout=0)  # one fetch of another member
        assert again is not None, "the requeued entry waited behind parked retries"
        assert (again.body, again.attempt) == ("y", 2)
        again.ack()


def test_an_async_requeue_is_claimed_by_the_next_fetch_past_idle_parked_retries(
    make: Make, redis_client: redis.Redis, redis_target: RedisTarget, prefix: str
) -> None:
    vt = 0.3
    key = make(visibility_timeout=vt).stream_key("jobs")
    parked = 300
    _park(make(visibility_timeout=vt), "jobs", parked)
    _wait_idle(redis_client, key, int(vt * 1000), parked, PARKING)
    url = redis_target.url("redis+stream", prefix=prefix)

    async def main() -> None:
        async with brokerkit.aio.connect(url, visibility_timeout=vt) as broker:
            one = await broker.subscribe("jobs", group="g")
            other = await broker.subscribe("jobs", group="g")
            await broker.publish("jobs", "y")
            delivery = await one.receive(timeout=PROMPT)
            assert delivery is not None and delivery.body == "y"
            await delivery.nack(requeue=True)
            again = await other.receive(timeout=0)  # one fetch of another member
            assert again is not None, "the requeued entry waited behind parked retries"
            assert (again.body, again.attempt) == ("y", 2)
            await again.ack()

    run(main())


def test_many_idle_parked_retries_are_parked_again_a_bounded_batch_per_fetch(
    make: Make, redis_client: redis.Redis
) -> None:
    """More idle parked retries than one call parks again: each fetch parks a bounded
    batch, the next one goes on at once, and the dead consumer's entry behind them
    comes out within a few fetches."""
    vt = 0.3
    lease = int(vt * 1000)
    broker = make(visibility_timeout=vt)
    key = broker.stream_key("jobs")
    parked = REPARK_BUDGET + 2 * LOCATE_PAGE
    _park(broker, "jobs", parked)
    _wait_idle(redis_client, key, lease, parked, PARKING)
    broker.publish("jobs", "x")
    _crashed_holding_one(redis_client, key)
    _wait_idle(redis_client, key, lease, 1, "dead")
    with broker.subscribe("jobs", group="g", prefetch=1) as subscription:
        assert subscription.receive(timeout=0) is None  # the first fetch stopped short...
        still_idle = _idle(redis_client, key, lease, PARKING)
        assert still_idle >= parked - REPARK_BUDGET - LOCATE_PAGE, "one call did unbounded work"
        assert still_idle < parked
        got = None
        for _ in range(5):  # ... and the next ones go on where it stopped
            got = subscription.receive(timeout=0)
            if got is not None:
                break
        assert got is not None, "the dead consumer's entry waited behind parked retries"
        assert got.body == "x"
        got.ack()
    assert broker.inspect("jobs").scheduled == parked


def test_a_delayed_retry_parked_again_comes_back_when_due_and_no_earlier(
    make: Make, redis_client: redis.Redis
) -> None:
    """A retry idle past the lease long before its due time is parked again by the
    fetches that pass it, and comes out when due, once, counted."""
    vt = 0.3
    broker = make(visibility_timeout=vt)
    key = broker.stream_key("jobs")
    _park(broker, "jobs", 100)
    broker.publish("jobs", "soon")
    delay = 3.0
    with broker.subscribe("jobs", group="g") as nacker:
        delivery = nacker.receive(timeout=PROMPT)
        assert delivery is not None and delivery.body == "soon"
        nacked = time.monotonic()
        delivery.nack(delay=delay)
    _wait_idle(redis_client, key, int(vt * 1000), 101, PARKING)
    with broker.subscribe("jobs", group="g") as subscription:
        back = subscription.receive(timeout=delay + PROMPT)
        arrived = time.monotonic()
        assert back is not None, "the delayed retry never came back"
        assert (back.body, back.attempt) == ("soon", 2)
        assert arrived >= nacked + delay - SLACK, f"it came {nacked + delay - arrived:.3f}s early"
        back.ack()
        assert subscription.receive(timeout=0) is None
    assert broker.inspect("jobs").scheduled == 100


# -- the reaper pages through the whole pending entries list ------------------------


def _dead_letters(client: redis.Redis, broker: RedisStreamBroker, topic: str) -> int:
    return int(client.xlen(broker.stream_key(broker.dead_letter_topic(topic))))


def _wait_dead_letters(
    client: redis.Redis, broker: RedisStreamBroker, topic: str, count: int, within: float
) -> None:
    deadline = time.monotonic() + within
    while _dead_letters(client, broker, topic) < count:
        assert time.monotonic() < deadline, (
            f"{_dead_letters(client, broker, topic)} of {count} poison entries dead-lettered"
        )
        time.sleep(0.05)  # polling with a deadline, not synchronisation


def test_the_reaper_dead_letters_a_poison_entry_behind_many_idle_entries(
    make: Make, redis_client: redis.Redis
) -> None:
    """Nobody fetches; the poison entry comes after 150 idle entries still under
    max_deliveries (it was never reached when each round looked at the first 100),
    and one of those turned poison later is reached too, as the rounds wrap around."""
    vt = 0.3
    broker = make(visibility_timeout=vt, max_deliveries=2)
    key = broker.stream_key("jobs")
    broker.create_group("jobs", "g")
    ahead = 150
    broker.publish_many("jobs", [f"ok-{i}" for i in range(ahead)])
    held: Any = redis_client.xreadgroup("g", "dead", {key: ">"}, count=ahead)
    first_ok: bytes = held[0][1][0][0]
    broker.publish("jobs", "poison")
    poison = _crashed_holding_one(redis_client, key)
    redis_client.xclaim(key, "g", "dead", 0, [poison])  # its second delivery
    with broker.subscribe("jobs", group="g"):  # the reaper runs; nobody fetches
        _wait_dead_letters(redis_client, broker, "jobs", 1, within=20 * vt + PROMPT)
        redis_client.xclaim(key, "g", "dead", 0, [first_ok])  # now past the limit too
        _wait_dead_letters(redis_client, broker, "jobs", 2, within=20 * vt + PROMPT)
    letters: Any = redis_client.xrange(broker.stream_key(broker.dead_letter_topic("jobs")))
    assert [fields[b"x-original-entry"] for _, fields in letters] == [poison, first_ok]
    assert broker.inspect("jobs").in_flight == ahead - 1, "only the poison entries went"


# -- a 'latest' group made again gets what the same call released -------------------


def test_a_delayed_publish_released_into_a_deleted_stream_reaches_a_latest_group(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make(visibility_timeout=30, delay_poll_interval=0.05)
    key = broker.stream_key("jobs")
    with broker.subscribe("jobs", group="g", start="latest") as subscription:
        broker.publish("jobs", "now")
        delivery = subscription.receive(timeout=PROMPT)
        assert delivery is not None and delivery.body == "now"
        delivery.ack()
        broker.publish("jobs", "later", delay=0.2)
        scheduled: Any = redis_client.zrange(key + ":scheduled", 0, 0, withscores=True)
        [(_, due_ms)] = scheduled
        redis_client.delete(key)  # the stream is lost under the live subscription
        deadline = time.monotonic() + PROMPT
        while _server_ms(redis_client) < due_ms:
            assert time.monotonic() < deadline
            time.sleep(0.01)  # polling with a deadline, not synchronisation
        later = subscription.receive(timeout=PROMPT)
        assert later is not None, "the group was made again after the released publish"
        assert later.body == "later"
        later.ack()
        assert subscription.receive(timeout=0) is None


# -- body_field cannot be a field a dead letter writes -------------------------------


@pytest.mark.parametrize("field", ["x-original-entry"])
def test_body_field_cannot_be_the_dead_letters_original_entry_field(
    redis_target: RedisTarget, field: str
) -> None:
    url = redis_target.url("redis+stream", body_field=field)
    with pytest.raises(InvalidOption, match=f"body_field cannot be '{field}'.*dead letter"):
        brokerkit.connect(url)

    async def main() -> None:
        with pytest.raises(InvalidOption, match=f"body_field cannot be '{field}'"):
            await brokerkit.aio.connect(url)

    run(main())


def test_a_dead_letter_keeps_its_payload_under_another_body_field(make: Make) -> None:
    broker = make(body_field="data")
    broker.publish("jobs", b"precious")
    with broker.subscribe("jobs", group="g") as subscription:
        delivery = subscription.receive(timeout=PROMPT)
        assert delivery is not None
        delivery.nack(requeue=False)
    with broker.subscribe(broker.dead_letter_topic("jobs"), group="g") as dead:
        letter = dead.receive(timeout=PROMPT)
        assert letter is not None
        assert letter.payload == b"precious"
        letter.ack()
