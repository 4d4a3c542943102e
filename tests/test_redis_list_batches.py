"""What a redis+list batch leaves in Redis: a fetch of many moves its elements to a
list of their own and keeps ``expiry`` a hash table (in a listpack, every HSET, HMGET
and HDEL of a batch scans the whole hash), writes exactly the receipts the client
computes, and the batch goes with its last settled delivery; an ack of a batch whose
expiry values differ from one receipt to the next reports exactly the stale ones; and the
client reads a fetched batch into the very messages and attempts that reading each
element on its own gives."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit._message import Message
from brokerkit.backends.redis import _envelope
from brokerkit.backends.redis.list.plan import batch_runs
from brokerkit.backends.redis.list.replies import fetched_messages, unwrap
from brokerkit.exceptions import IncompatibleTopic, StaleDelivery

pytestmark = pytest.mark.redis_list


@pytest.fixture
def connect(redis_broker: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(redis_broker, "redis+list")


def test_a_batch_is_one_list_one_expiry_value_and_a_flag_a_delivery(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = connect(visibility_timeout=30)
    keys = broker._topic("orders").keys
    broker.publish_many("orders", [f"m{i}" for i in range(100)])
    queued = redis_client.lrange(keys.queue, 0, -1)
    subscription = broker.subscribe("orders", prefetch=100)
    got = [subscription.receive(timeout=5) for _ in range(100)]
    deliveries = [d for d in got if d is not None]
    assert [d.body for d in deliveries] == [f"m{i}" for i in range(100)]
    nonce = deliveries[0].receipt.partition("-")[0] + "-"
    consumer = subscription.consumer
    assert [d.receipt for d in deliveries] == [f"{nonce}{i}:{consumer}" for i in range(100)]
    # the elements as they were in the queue, next-out first
    batch = keys.batch(nonce, consumer)
    assert redis_client.lrange(batch, 0, -1) == queued[::-1]
    # one expiry value for the batch, one flag a delivery ("0": leased by it)
    (field,) = redis_client.hkeys(keys.expiry)
    assert field == f"{nonce}:{consumer}".encode()
    deadline, _, delivered = redis_client.hget(keys.expiry, field).partition(b".")
    assert int(deadline) - int(delivered) == 30_000
    fetches = keys.fetches(consumer)
    assert redis_client.hgetall(fetches) == {nonce.encode(): b"0" * 100}
    assert redis_client.zrange(keys.deadlines, 0, -1) == [f"{nonce}0+100:{consumer}".encode()]
    assert redis_client.exists(keys.leases(consumer)) == 0
    broker.ack(*deliveries)
    assert redis_client.exists(keys.expiry, fetches, batch, keys.deadlines) == 0


def test_a_batch_blanks_each_settled_element_and_goes_with_its_last(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = connect()
    keys = broker._topic("orders").keys
    elements = [f'{{"orderId": {i}}}'.encode() for i in range(5)] + [b""]  # raw, one empty
    redis_client.lpush(keys.queue, *elements)
    subscription = broker.subscribe("orders", prefetch=6)
    got = [subscription.receive(timeout=5) for _ in range(6)]
    deliveries = [d for d in got if d is not None]
    assert [d.payload for d in deliveries] == elements
    nonce = deliveries[0].receipt.partition("-")[0] + "-"
    batch, fetches = keys.batch(nonce, subscription.consumer), keys.fetches(subscription.consumer)
    broker.ack(deliveries[1], deliveries[3])
    deliveries[4].nack()  # handed back: settled here too
    assert redis_client.lrange(batch, 0, -1) == [elements[0], b"", elements[2], b"", b"", b""]
    assert redis_client.hget(fetches, nonce) == b"010110"  # "1": settled
    # the empty element is a live delivery: its flag says so
    assert broker.inspect("orders").in_flight == 3
    deliveries[5].nack()
    assert redis_client.lrange(keys.queue, 0, -1) == [elements[4], b""]  # the last next out
    broker.ack(deliveries[0], deliveries[2])
    assert redis_client.exists(batch, fetches, keys.expiry) == 0


@pytest.mark.parametrize("count", [1, 7, 8, 10, 16, 99, 100, 101, 120, 600])
def test_a_batchs_receipts_are_the_ones_the_client_computes(
    connect: Callable[..., Any], redis_client: redis.Redis, count: int
) -> None:
    broker = connect()
    plan = broker._topic("orders")
    batch = plan.keys.batch("n0-", "c1")
    keys = [*plan.keys_for(["c1"]), batch]
    redis_client.lpush(plan.keys.queue, *[f"e{i}" for i in range(count)])
    fetch = broker._scripts["FETCH"]
    assert fetch(keys=keys, args=[*plan.common, "c1", count, 30_000, "n0-", 0]) == [count, None, 0]
    assert redis_client.lrange(batch, 0, -1) == [f"e{i}".encode() for i in range(count)]
    assert redis_client.exists(plan.keys.queue) == 0
    names = [f"n0-{n}" for n in range(count)]
    assert redis_client.hkeys(plan.keys.expiry) == [b"n0-:c1"]
    assert redis_client.hget(plan.keys.fetches("c1"), "n0-") == b"0" * count
    group = f"n0-0+{count}:c1".encode()
    assert redis_client.zrange(plan.keys.deadlines, 0, -1) == [group]
    # the nonce of a batch that exists is refused
    redis_client.lpush(plan.keys.queue, b"next")
    with pytest.raises(redis.ResponseError, match="in use"):
        fetch(keys=keys, args=[*plan.common, "c1", 1, 30_000, "n0-", 0])
    settle = broker._scripts["SETTLE"]
    for start in range(0, count, 250):
        chunk = names[start : start + 250]
        receipts = [f"{n}:c1" for n in chunk]
        assert settle(keys=keys, args=[*plan.common, "ack", *batch_runs(receipts)]) == []
    assert redis_client.exists(plan.keys.expiry, plan.keys.fetches("c1"), batch) == 0
    assert redis_client.lrange(plan.keys.queue, 0, -1) == [b"next"]


@pytest.mark.parametrize("key", ["expiry", "fetches"])
@pytest.mark.parametrize("raw", [False, True])
def test_a_batch_whose_lease_cannot_be_written_loses_nothing(
    connect: Callable[..., Any], redis_client: redis.Redis, key: str, raw: bool
) -> None:
    broker = connect()
    keys = broker._topic("orders").keys
    if raw:
        redis_client.lpush(keys.queue, *[f"m{i}".encode() for i in range(20)])
    else:
        broker.publish_many("orders", [f"m{i}" for i in range(20)])
    queued = redis_client.lrange(keys.queue, 0, -1)
    subscription = broker.subscribe("orders", prefetch=20)
    fetches = keys.fetches(subscription.consumer)
    redis_client.set(keys.expiry if key == "expiry" else fetches, "not a hash")
    with pytest.raises(IncompatibleTopic):
        subscription.receive(timeout=0.1)
    # moved, then put back as they were: nothing leased, nothing lost, order kept
    assert redis_client.lrange(keys.queue, 0, -1) == queued
    assert redis_client.exists(keys.deadlines) == 0
    assert redis_client.type(keys.expiry if key == "fetches" else fetches) == b"none"
    assert not redis_client.keys(keys.batches_prefix + "*")
    redis_client.delete(keys.expiry, fetches)
    got = [subscription.receive(timeout=5) for _ in range(20)]
    deliveries = [d for d in got if d is not None]
    assert [d.payload for d in deliveries] == [
        e if raw else _envelope.decode("orders", e).payload for e in reversed(queued)
    ]
    broker.ack(*deliveries)


def test_an_ack_of_leases_in_every_state_reports_exactly_the_stale_ones(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = connect(visibility_timeout=30)
    keys = broker._topic("orders").keys
    broker.publish_many("orders", [f"m{i}" for i in range(10)])
    subscription = broker.subscribe("orders", prefetch=10)
    got = [subscription.receive(timeout=5) for _ in range(10)]
    deliveries = [d for d in got if d is not None]
    assert len(deliveries) == 10
    nonce = deliveries[0].receipt.partition("-")[0] + "-"
    fetches = keys.fetches(subscription.consumer)
    value = redis_client.hget(keys.expiry, f"{nonce}:{subscription.consumer}")
    # live ones under the batch's value between ones with values of their own: expired,
    # unreadable, gone, live in the form an earlier version wrote, and one settled
    redis_client.hset(fetches, nonce, b"0202222210")
    redis_client.hset(keys.expiry, deliveries[1].receipt, b"1.5")
    redis_client.hset(keys.expiry, deliveries[3].receipt, b"garbage")
    redis_client.hset(keys.expiry, deliveries[5].receipt, value.partition(b".")[0])
    redis_client.hset(keys.expiry, deliveries[6].receipt, value)
    redis_client.hset(keys.expiry, deliveries[7].receipt, b"1.5")
    with pytest.raises(StaleDelivery) as caught:
        broker.ack(*deliveries)
    stale = {d.receipt for d in caught.value.deliveries}
    assert stale == {deliveries[i].receipt for i in (1, 3, 4, 7, 8)}
    # each one that was leased handed back, its attempt counted; the settled one not
    assert redis_client.llen(keys.queue) == 4
    again = [subscription.receive(timeout=5) for _ in range(4)]
    assert sorted((d.body, d.attempt) for d in again if d is not None) == [
        ("m1", 2),
        ("m3", 2),
        ("m4", 2),
        ("m7", 2),
    ]
    broker.ack(*[d for d in again if d is not None])
    assert redis_client.exists(keys.expiry, fetches) == 0


def _fetched(broker: Any, count: int) -> tuple[str, Any, Any, list[Any], str, str]:
    """One fetch of ``count`` deliveries of a fresh topic: the topic, its keys, the
    subscription, the deliveries, the fetch's nonce and its batch's name."""
    topic = f"batch-{uuid.uuid4().hex[:8]}"
    broker.publish_many(topic, [f"m{i}" for i in range(count)])
    subscription = broker.subscribe(topic, prefetch=count)
    got = [subscription.receive(timeout=5) for _ in range(count)]
    deliveries = [d for d in got if d is not None]
    assert len(deliveries) == count
    nonce = deliveries[0].receipt.partition("-")[0] + "-"
    name = f"{nonce}:{subscription.consumer}"
    return topic, broker._topic(topic).keys, subscription, deliveries, nonce, name


_LEASE_STATES = st.sampled_from(["live", "settled", "own live", "own expired"])


@settings(
    max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    states=st.lists(_LEASE_STATES, min_size=1, max_size=6),
    batch_value=st.sampled_from(["live", "expired", "garbage", "gone"]),
)
def test_an_ack_of_a_whole_fetch_settles_as_naming_each_delivery_does(
    connect: Callable[..., Any],
    redis_client: redis.Redis,
    states: list[str],
    batch_value: str,
) -> None:
    """The client names a fetch's batch alone when it acks the whole of it, in order
    (SETTLE's short form); any state its leases are in settles as naming each does."""
    broker = connect(visibility_timeout=30)
    outcomes = []
    for whole in (True, False):
        topic, keys, subscription, deliveries, nonce, name = _fetched(broker, len(states))
        consumer = subscription.consumer
        value = redis_client.hget(keys.expiry, name)
        assert value is not None
        flags = {"live": "0", "settled": "1", "own live": "2", "own expired": "2"}
        redis_client.hset(keys.fetches(consumer), nonce, "".join(flags[s] for s in states))
        for delivery, state in zip(deliveries, states, strict=True):
            if state.startswith("own"):
                own = value if state == "own live" else b"1.5"
                redis_client.hset(keys.expiry, delivery.receipt, own)
        if batch_value == "gone":
            redis_client.hdel(keys.expiry, name)
        elif batch_value != "live":
            redis_client.hset(keys.expiry, name, b"1.5" if batch_value == "expired" else b"x")
        if not whole:
            subscription.state.fetched = ([], [])  # so the ack names each delivery
        try:
            broker.ack(*deliveries)
            stale: list[int] = []
        except StaleDelivery as exc:
            stale = sorted(deliveries.index(d) for d in exc.deliveries)
        back = sorted(
            (unwrap(e)[0], _envelope.decode(topic, unwrap(e)[1]).payload)
            for e in redis_client.lrange(keys.queue, 0, -1)
        )
        left = redis_client.exists(keys.batch(nonce, consumer), keys.fetches(consumer))
        outcomes.append((stale, back, left, redis_client.hexists(keys.expiry, name)))
        subscription.close()
    assert outcomes[0] == outcomes[1]


_EXTEND_STATES = st.sampled_from(
    ["live", "settled", "own live", "own long", "own expired", "own garbage"]
)


def _scores(client: redis.Redis, key: str) -> dict[bytes, float]:
    return dict(client.zrange(key, 0, -1, withscores=True))


def _changes(
    before: dict[bytes, float], after: dict[bytes, float], nonce: str, consumer: str
) -> list[tuple[bytes, str]]:
    """What became of each member of a sorted set: kept, moved, gone, or new; named
    with the fetch's nonce and consumer as N and C, so that two fetches compare."""

    def anonymous(member: bytes) -> bytes:
        return member.replace(nonce.encode(), b"N").replace(consumer.encode(), b"C")

    return sorted(
        (anonymous(m), "new" if m not in before else "same" if before[m] == s else "moved")
        for m, s in after.items()
    ) + sorted((anonymous(m), "gone") for m in before if m not in after)


@settings(
    max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    states=st.lists(_EXTEND_STATES, min_size=1, max_size=12),
    batch_value=st.sampled_from(["live", "long", "expired", "garbage", "gone", "no flags"]),
    how=st.sampled_from(["renew", "set 1 s", "set 600 s"]),
)
def test_an_extension_of_a_whole_fetch_renews_as_naming_each_delivery_does(
    connect: Callable[..., Any],
    redis_client: redis.Redis,
    states: list[str],
    batch_value: str,
    how: str,
) -> None:
    """The client names a fetch's batch alone when it extends or renews the whole of it,
    in order (EXTEND's short form); any state its leases are in (a deadline sooner than
    the new one, or later: "long"; the batch's flags gone) comes out as naming each
    delivery does: the same stale ones, hand-backs, deadlines, lease groups and
    heartbeat."""
    broker = connect(visibility_timeout=30)
    seconds, _ = redis_client.time()
    soon, later = f"{(seconds + 10) * 1000}.5", f"{(seconds + 10**5) * 1000}.5"
    values = {"live": soon, "long": later, "expired": "1.5", "garbage": "x", "no flags": soon}
    own = {"own live": soon, "own long": later, "own expired": "1.5", "own garbage": "x"}
    extend = broker._scripts["EXTEND"]
    sent: list[list[Any]] = []

    def spy(**call: Any) -> Any:
        sent.append(call["args"])
        return extend(**call)

    broker._scripts["EXTEND"] = spy
    outcomes = []
    for whole in (True, False):
        topic, keys, subscription, deliveries, nonce, name = _fetched(broker, len(states))
        consumer = subscription.consumer
        flags = {"live": "0", "settled": "1"}
        fetches = keys.fetches(consumer)
        redis_client.hset(fetches, nonce, "".join(flags.get(s, "2") for s in states))
        for delivery, state in zip(deliveries, states, strict=True):
            if state in own:
                redis_client.hset(keys.expiry, delivery.receipt, own[state])
        if batch_value == "gone":
            redis_client.hdel(keys.expiry, name)
        else:
            redis_client.hset(keys.expiry, name, values[batch_value])
        if batch_value == "no flags":
            redis_client.hdel(fetches, nonce)
        redis_client.zadd(keys.consumers, {consumer: (seconds + 5) * 1000})
        fields = [name, *(d.receipt for d in deliveries)]
        before = redis_client.hmget(keys.expiry, fields)
        groups = _scores(redis_client, keys.deadlines)
        beats = _scores(redis_client, keys.consumers)
        if not whole:
            subscription.state.fetched = ([], [])  # so the call names each delivery
        sent.clear()
        if how == "renew":
            stale = sorted(deliveries.index(d) for d in broker._renew(deliveries))
        else:
            try:
                broker.extend(*deliveries, seconds=int(how.split()[1]))
                stale = []
            except StaleDelivery as exc:
                stale = sorted(deliveries.index(d) for d in exc.deliveries)
        assert (sent[0][-1] == -len(states)) is whole  # the short form, or each index
        after = redis_client.hmget(keys.expiry, fields)
        moved = [
            "gone" if b is None else "same" if a == b else "moved"
            for a, b in zip(before, after, strict=True)
        ]
        back = sorted(
            (unwrap(e)[0], _envelope.decode(topic, unwrap(e)[1]).payload)
            for e in redis_client.lrange(keys.queue, 0, -1)
        )
        outcomes.append(
            (
                stale,
                moved,
                back,
                _changes(groups, _scores(redis_client, keys.deadlines), nonce, consumer),
                _changes(beats, _scores(redis_client, keys.consumers), nonce, consumer),
                redis_client.hget(fetches, nonce),
            )
        )
        subscription.close()
    broker._scripts["EXTEND"] = extend
    assert outcomes[0] == outcomes[1]


def test_a_run_of_receipts_names_one_batch() -> None:
    """batch_runs starts a run at each batch: a receipt without a nonce (an earlier
    version's) is a run of its own, never one that takes in a batch's receipts, which
    the scripts would then read as an earlier version's leases."""
    receipts = ["5:C", "N-0:C", "N-1:C", "7:C", "M-3:C", "N-2:C", "N-3:D"]
    runs = batch_runs(receipts)
    expected = [":C", 1, "5", "N-:C", 2, "0", "1", ":C", 1, "7", "M-:C", 1, "3"]
    expected += ["N-:C", 1, "2", "N-:D", 1, "3"]
    assert runs == expected


_PLAIN = _envelope.encode(Message("0193ab", "orders", b"body", "application/json", {}, 1.5))
_WITH_HEADERS = _envelope.encode(
    Message("0193cd", "orders", b"\xff\x00", "application/octet-stream", {"k": "v"}, 2.0)
)
ELEMENTS = [
    _PLAIN,
    _WITH_HEADERS,
    b"BKR3\n" + _PLAIN,
    b"BKR1\n" + _WITH_HEADERS,
    b"BKR0\n" + _PLAIN,
    b"BKRx\n" + _PLAIN,  # not a count: a raw element as it is
    b"BKR",
    b"BKR12",
    b'{"orderId": 7}',
    b"plain text",
    b"\xff\x00 not text",
    b"",
    b'BK1{"id":"ab","ct":"\xff","ts":1}\npayload',  # a content type that is no UTF-8
    b'BK1{"id":"ab","ct":"x/y","ts":1e999}\npayload',  # no finite time
    b'BK1{"id":"ab","ct":"x/y","ts":-1.25e-3}\n',
    b'BK1{"id":"AB","ct":"x/y","ts":1}\npayload',  # not the plain header: JSON's path
    b'BK1{"id":"ab","ct":"x/y","ts":1,"h":{"a":"b"}}\npayload',
    b'BK1{"id":"ab","ct":"x/y","ts":1}',  # no line break
    b"BK1{not json}\npayload",
]


def _one_by_one(
    elements: list[bytes], raw_content_type: str | None
) -> tuple[list[Message], list[int]]:
    """What reading each element on its own gives (as a fetch did before batches)."""
    messages, attempts = [], []
    for element in elements:
        before, inner = unwrap(element)
        messages.append(_envelope.decode("orders", inner, raw_content_type))
        attempts.append(1 + before)
    return messages, attempts


def _attempts(count: int, again: dict[int, int] | None) -> list[int]:
    return [(again or {}).get(i, 1) for i in range(count)]


@pytest.mark.parametrize("raw_content_type", [None, "text/plain"])
def test_a_fetched_batch_reads_as_each_element_on_its_own(raw_content_type: str | None) -> None:
    messages, again = fetched_messages("orders", ELEMENTS, raw_content_type)
    expected, attempts = _one_by_one(ELEMENTS, raw_content_type)
    assert messages == expected
    assert _attempts(len(ELEMENTS), again) == attempts
    # each message has headers of its own
    assert len({id(m.headers) for m in messages}) == len(messages)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"", b"BKR2\n", b"BKR", b"BK1", b"BK1{", _PLAIN[:40], _PLAIN]),
            st.binary(max_size=40),
        ).map(lambda parts: parts[0] + parts[1]),
        max_size=20,
    )
)
def test_any_fetched_batch_reads_as_each_element_on_its_own(elements: list[bytes]) -> None:
    messages, again = fetched_messages("orders", elements, None)
    expected, attempts = _one_by_one(elements, None)
    assert messages == expected
    assert _attempts(len(elements), again) == attempts


@pytest.mark.parametrize(
    "element",
    [
        b"BKR" + b"9" * 5000 + b"\nhello",
        b"BKR" + b"1" * 16 + b"\nhello",
        b"BKR0x1F\nhello",
        b"BKR-3\nhello",
        b"BKR 12\nhello",
        b"BKR1e3\nhello",
        b"BKR\nhello",
        b"BKR12",
    ],
)
def test_an_element_that_is_no_wrapper_stays_raw_through_its_deliveries(
    connect: Callable[..., Any], redis_client: redis.Redis, element: bytes
) -> None:
    """``BKR`` and anything but 1 to 15 digits and a newline is another program's
    element: the scripts and the client both read it as raw, so it comes back through a
    nack exactly as it was, its count kept apart (it was read as a count by the scripts
    alone: a hex, signed or 5,000-digit "count" changed the payload between deliveries,
    or dead-lettered it at once)."""
    broker = connect(max_deliveries=5)
    redis_client.lpush(broker._topic("orders").keys.queue, element)
    subscription = broker.subscribe("orders")
    for attempt in (1, 2, 3):
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        assert (delivery.message.payload, delivery.attempt) == (element, attempt)
        if attempt < 3:
            delivery.nack()
        else:
            delivery.ack()
    assert broker.inspect("orders").length == 0


@pytest.mark.parametrize("count", [1, 123, 10**14, 10**15 - 2])
def test_a_wrapped_count_of_up_to_15_digits_is_read_alike_by_scripts_and_client(
    connect: Callable[..., Any], redis_client: redis.Redis, count: int
) -> None:
    inner = _envelope.encode(Message("ab", "orders", b"hello", "text/plain", {}, 1.0))
    broker = connect()
    redis_client.lpush(broker._topic("orders").keys.queue, b"BKR%d\n" % count + inner)
    subscription = broker.subscribe("orders")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None and delivery.message.payload == b"hello"
    assert delivery.attempt == count + 1
    delivery.nack()
    again = subscription.receive(timeout=5)
    assert again is not None and again.message.payload == b"hello"
    assert again.attempt == count + 2
    again.ack()


def test_an_element_with_a_huge_count_is_delivered_as_it_is(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    """``BKR`` and 5,000 digits is no count brokerkit wrote (Python refuses ``int`` of
    more than 4,300 digits): the element is a raw message, delivered, never an error
    that leaves it leased and unseen until it is dead-lettered."""
    element = b"BKR" + b"9" * 5000 + b"\nhello"
    assert unwrap(element) == (0, element)
    broker = connect()
    redis_client.lpush(broker._topic("orders").keys.queue, element)
    delivery = broker.subscribe("orders").receive(timeout=5)
    assert delivery is not None and delivery.message.payload == element
    assert delivery.attempt == 1
    delivery.ack()


def test_a_fetch_of_big_elements_takes_about_4_mb_and_looks_again_without_waiting(
    redis_server: Any,
) -> None:
    # A private server: commandstats count this test's commands only.
    admin = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list")) as broker:
        plan = broker._topic("big")  # type: ignore[attr-defined]
        body = b"x" * 1_000_000
        admin.lpush(plan.keys.queue, *[body] * 10)
        fetch = broker._scripts["FETCH"]  # type: ignore[attr-defined]
        keys = [*plan.keys_for(["c1"]), plan.keys.batch("n-", "c1")]
        # sized by the next one out: 4 of 1 MB, and told that more were waiting
        assert fetch(keys=keys, args=[*plan.common, "c1", 10, 30_000, "n-", 0]) == [4, None, 1]
        assert admin.llen(plan.keys.queue) == 6
        admin.config_resetstat()
        subscription = broker.subscribe("big", prefetch=10)
        got = [subscription.receive(timeout=5) for _ in range(6)]
        assert all(d is not None and d.payload == body for d in got)
        broker.ack(*got)  # type: ignore[arg-type]
        assert "cmdstat_blmove" not in admin.info("commandstats")  # never waited


def test_a_fetch_reads_no_element_once_it_knows_their_size(redis_server: Any) -> None:
    admin = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list")) as broker:
        broker.publish_many("sized", [f"m{i}" for i in range(30)])
        subscription = broker.subscribe("sized", prefetch=10)
        first = [subscription.receive(timeout=5) for _ in range(10)]
        broker.ack(*first)  # type: ignore[arg-type]
        admin.config_resetstat()
        rest = [subscription.receive(timeout=5) for _ in range(20)]
        assert [d.body for d in rest if d] == [f"m{i}" for i in range(10, 30)]
        broker.ack(*rest)  # type: ignore[arg-type]
        # the first fetch read the next one out for its size; the others, nothing
        assert "cmdstat_lindex" not in admin.info("commandstats")


def test_the_count_of_returned_elements_heals_when_another_program_takes_one(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = connect()
    keys = broker._topic("orders").keys
    broker.publish("orders", "poison")
    subscription = broker.subscribe("orders", prefetch=10)
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    delivery.nack()
    assert redis_client.get(keys.returned) == b"1"
    assert redis_client.rpop(keys.queue) is not None  # another program took it
    broker.publish_many("orders", [f"m{i}" for i in range(10)])
    # the count still says one came back: a fetch takes one alone until it is spent
    # (the waiting consumer's wake-up reads what it woke for: fresh, and the batch stops
    # behind it; the next fetch spends the count), then whole batches again
    got = [subscription.receive(timeout=5) for _ in range(10)]
    flags = sorted(redis_client.hvals(keys.fetches(subscription.consumer)))
    assert flags == [b"0", b"0", b"0" * 8]
    assert [d.body for d in got if d] == [f"m{i}" for i in range(10)]
    broker.ack(*got)
    assert redis_client.exists(keys.returned) == 0


@pytest.mark.parametrize("garbled", [b"not a number", b"-3"])
def test_a_garbled_count_of_returned_elements_never_jams_a_nack(
    connect: Callable[..., Any], redis_client: redis.Redis, garbled: bytes
) -> None:
    broker = connect()
    keys = broker._topic("orders").keys
    broker.publish("orders", "m")
    redis_client.set(keys.returned, garbled)  # another program's doing
    subscription = broker.subscribe("orders")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    delivery.nack()
    assert redis_client.get(keys.returned) == b"1"
    again = subscription.receive(timeout=5)
    assert again is not None and again.attempt == 2
    again.ack()
    assert redis_client.exists(keys.returned) == 0


def test_an_extension_by_hand_moves_the_batch_or_gives_deliveries_their_own_deadline(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = connect(visibility_timeout=30)
    keys = broker._topic("orders").keys
    broker.publish_many("orders", ["a", "b", "c"])
    subscription = broker.subscribe("orders", prefetch=3)
    got = [subscription.receive(timeout=5) for _ in range(3)]
    a, b, c = [d for d in got if d is not None]
    nonce = a.receipt.partition("-")[0] + "-"
    name, fetches = f"{nonce}:{subscription.consumer}", keys.fetches(subscription.consumer)
    before = redis_client.hget(keys.expiry, name)
    broker.extend(a, c, seconds=60)  # some of the batch: values of their own
    assert redis_client.hget(fetches, nonce) == b"202"
    assert redis_client.hget(keys.expiry, name) == before
    assert redis_client.hget(keys.expiry, a.receipt) == redis_client.hget(keys.expiry, c.receipt)
    broker.extend(b, seconds=90)  # every delivery under the batch's value: it moves
    assert redis_client.hget(fetches, nonce) == b"202"
    moved = redis_client.hget(keys.expiry, name)
    assert int(moved.split(b".")[0]) > int(before.split(b".")[0])
    broker.ack(a, b, c)
    assert redis_client.exists(keys.expiry, fetches) == 0


def test_an_extension_by_hand_of_a_delivery_with_its_own_deadline_moves_that_one(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    """A delivery extended by hand before has a deadline of its own: a later extension
    by hand moves that deadline (earlier too) and leaves the batch's alone."""
    broker = connect(visibility_timeout=30)
    keys = broker._topic("orders").keys
    broker.publish_many("orders", ["a", "b"])
    subscription = broker.subscribe("orders", prefetch=2)
    got = [subscription.receive(timeout=5) for _ in range(2)]
    a, b = [d for d in got if d is not None]
    nonce = a.receipt.partition("-")[0] + "-"
    name, fetches = f"{nonce}:{subscription.consumer}", keys.fetches(subscription.consumer)
    broker.extend(a, seconds=600)  # a value of its own
    batch_value, own = (
        redis_client.hget(keys.expiry, name),
        redis_client.hget(keys.expiry, a.receipt),
    )
    broker.extend(a, seconds=5)
    moved = redis_client.hget(keys.expiry, a.receipt)
    assert float(moved) < float(own) - 500_000  # about 595 s earlier, in ms
    assert redis_client.hget(keys.expiry, name) == batch_value
    assert redis_client.hget(fetches, nonce) == b"20"
    broker.ack(a, b)


def test_a_wake_up_reads_what_it_woke_for_so_a_returned_one_never_joins_a_batch(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    # The review's race, in one send: a consumer's BLMOVE takes a message that came back
    # while another fetch, finding the queue empty, clears the count; fresh messages
    # come before the first consumer's script runs. The script reads the one element
    # its BLMOVE moved: the message that came back goes alone.
    broker = connect()
    plan = broker._topic("orders")
    keys = plan.keys
    redis_client.rpush(keys.queue, b"BKR1\nraw-poison")
    redis_client.set(keys.returned, 1)
    redis_client.lmove(keys.queue, keys.processing("c1"), "RIGHT", "RIGHT")
    redis_client.delete(keys.returned)  # as the other fetch on an empty queue does
    redis_client.lpush(keys.queue, b"f1", b"f2", b"f3")
    fetch = broker._scripts["FETCH"]
    batch = keys.batch("w-", "c1")
    args = [*plan.common, "c1", 10, 30_000, "w-", 0, "1"]
    assert fetch(keys=[*plan.keys_for(["c1"]), batch], args=args) == [1, None, 1]
    assert redis_client.lrange(batch, 0, -1) == [b"BKR1\nraw-poison"]
    assert redis_client.llen(keys.queue) == 3


def test_a_garbled_attempts_count_of_a_raw_element_still_delivers_it(
    connect: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = connect()
    keys = broker._topic("orders").keys
    redis_client.lpush(keys.queue, b"raw")
    subscription = broker.subscribe("orders")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    delivery.nack()
    (digest,) = redis_client.hkeys(keys.attempts)
    redis_client.hset(keys.attempts, digest, b"1e3")  # another program's doing
    again = subscription.receive(timeout=5)
    assert again is not None and again.payload == b"raw" and again.attempt == 1001
    again.ack()
