"""A consumer holding many deliveries never makes one big bookkeeping call: the lease
keeper renews (and redis+list settles and extends) in bounded chunks, one call after
another. Observed on a private redis-server's SLOWLOG, which logs every command with
its arguments (not a mock of Redis)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis

import brokerkit
from brokerkit.backends.redis._heartbeat import RENEW_CHUNK
from brokerkit.backends.redis.list.settle import _EXTENDS_PER_CALL, _RECEIPTS_PER_CALL
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LEASES
from tests.redis_server import RedisServer

HELD = 10_000
#: The arguments of a script call besides its receipts or entry ids: the script's
#: keys (a handful, two more per consumer) and its fixed arguments.
OVERHEAD = 40


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    client.config_set("slowlog-max-len", 100_000)
    yield client
    client.close()


def script_calls(client: redis.Redis, action: object) -> list[int]:
    """The argument counts of the scripts ``action()`` ran (every command logged)."""
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    try:
        action()  # type: ignore[operator]
    finally:
        client.config_set("slowlog-log-slower-than", 10_000)
    counts = []
    for entry in client.slowlog_get(100_000):
        command = entry["command"].decode(errors="replace")
        if not command.startswith("EVALSHA"):
            continue
        shown = command.split(" ")
        more = re.search(r"\.\.\. \((\d+) more arguments\)$", command)
        counts.append(len(shown) - 4 + int(more.group(1)) if more else len(shown))
    return counts


def hold(url: str, topic: str) -> tuple[brokerkit.Broker, list[brokerkit.Delivery]]:
    broker = brokerkit.connect(url, visibility_timeout=600)
    broker.publish_many(topic, [b"x"] * HELD)
    subscription = broker.subscribe(topic, prefetch=1000)
    got = [subscription.receive(timeout=10) for _ in range(HELD)]
    assert all(d is not None for d in got)
    return broker, got  # type: ignore[return-value]


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_a_renewal_round_of_10000_leases_is_calls_of_at_most_a_chunk(
    server: redis.Redis, redis_server: RedisServer, scheme: str
) -> None:
    broker, got = hold(redis_server.url(scheme), "many")
    try:
        assert len(broker._keeper.held()) == HELD  # type: ignore[attr-defined]
        calls = script_calls(server, broker._keeper._renew_held)  # type: ignore[attr-defined]
        assert len(calls) >= HELD // RENEW_CHUNK
        assert max(calls) <= RENEW_CHUNK + OVERHEAD
        broker.ack(*got)
    finally:
        broker.close()


def test_redis_list_acks_and_extends_a_big_batch_in_bounded_calls(
    server: redis.Redis, redis_server: RedisServer
) -> None:
    broker, got = hold(redis_server.url("redis+list"), "many")
    try:
        for action, per_call in (
            (lambda: broker.extend(*got, seconds=600), _EXTENDS_PER_CALL),
            (lambda: broker.ack(*got), _RECEIPTS_PER_CALL),
        ):
            calls = script_calls(server, action)
            assert len(calls) >= HELD // per_call
            assert max(calls) <= per_call + OVERHEAD
        assert broker.inspect("many").in_flight == 0
    finally:
        broker.close()


def test_redis_list_requeues_a_big_batch_in_bounded_calls_first_nacked_next_out(
    server: redis.Redis, redis_server: RedisServer
) -> None:
    count = 3 * _RECEIPTS_PER_CALL + 7
    broker = brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=600)
    try:
        broker.publish_many("order", range(count))
        subscription = broker.subscribe("order", prefetch=count)
        got = [subscription.receive(timeout=10) for _ in range(count)]
        assert [d.body for d in got if d is not None] == list(range(count))
        calls = script_calls(server, lambda: broker.nack(*got, requeue=True))  # type: ignore[arg-type]
        assert len(calls) >= 4  # (and a first one the server did not know yet)
        assert max(calls) <= _RECEIPTS_PER_CALL + OVERHEAD
        again = [subscription.receive(timeout=10) for _ in range(count)]
        assert [d.body for d in again if d is not None] == list(range(count))
        assert all(d is not None and d.attempt == 2 for d in again)
        broker.ack(*again)  # type: ignore[arg-type]
    finally:
        broker.close()


def server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.mark.parametrize("how", ["expired", "dead consumer"])
def test_redis_list_rescues_10000_leases_in_bounded_calls(
    server: redis.Redis, redis_server: RedisServer, how: str
) -> None:
    url = redis_server.url("redis+list")
    crashed = brokerkit.connect(url, visibility_timeout=600)
    rescuer = brokerkit.connect(url)
    try:
        crashed.publish_many("many", range(HELD))
        subscription = crashed.subscribe("many", prefetch=1000, consumer="crashed")
        got = [subscription.receive(timeout=10) for _ in range(HELD)]
        assert [d.body for d in got if d is not None] == list(range(HELD))
        crashed._suspend_renewals()  # type: ignore[attr-defined]  # a hung process
        details = rescuer.inspect("many").details
        past = server_ms(server) - 1
        if how == "expired":  # as if the server's clock had passed every deadline
            expiry, deadlines = details["expiry_key"], details["deadlines_key"]
            server.hset(expiry, mapping=dict.fromkeys(server.hkeys(expiry), past))
            # each fetch's lease group ran out in the order of the fetches, as leases do
            groups = server.zrange(deadlines, 0, -1)
            nonces = list(dict.fromkeys(d.receipt.partition("-")[0] for d in got if d))
            order = {n.encode(): i for i, n in enumerate(nonces)}
            ranked = sorted(groups, key=lambda g: order[g.partition(b"-")[0]])
            server.zadd(deadlines, {g: past - len(ranked) + i for i, g in enumerate(ranked)})
        else:  # its heartbeat ran out; its leases (600 s) did not
            server.zadd(details["consumers_key"], {"crashed": past})
        handed: list[int] = []
        calls = script_calls(server, lambda: handed.append(rescuer.rescue("many")))
        assert handed == [HELD]
        assert len(calls) >= HELD // RESCUE_LEASES  # rescue() runs no other script
        assert rescuer.inspect("many").in_flight == 0
        assert server.llen(details["queue_key"]) == HELD
        again = rescuer.subscribe("many", prefetch=1000)
        server.config_resetstat()
        back = [again.receive(timeout=10) for _ in range(HELD)]
        # Each came back, so each goes out alone; a fetch looks before it takes, and
        # never pops a batch only to push all but one back (2,000 commands a fetch).
        assert "cmdstat_rpush" not in server.info("commandstats")
        assert all(d is not None and d.attempt == 2 for d in back)
        bodies = [d.body for d in back if d is not None]
        assert sorted(bodies) == list(range(HELD))
        if how == "expired":  # handed back oldest first, across calls too
            assert bodies == list(range(HELD))
        rescuer.ack(*back)  # type: ignore[arg-type]
    finally:
        crashed.close()
        rescuer.close()


def test_a_failing_chunk_keeps_the_later_chunks_renewing() -> None:
    """One chunk's renewal failing (a topic whose key another program broke) leaves
    the other chunks of the round renewed, their lost leases reported, and the error
    raised at the end (logged by the beat)."""
    from brokerkit._delivery import Delivery
    from brokerkit._message import Message
    from brokerkit.backends.redis._heartbeat import LeaseKeeper

    renewed: list[list[str]] = []

    def renew(chunk: list[Delivery]) -> list[Delivery]:
        bodies = [d.message.payload.decode() for d in chunk]
        renewed.append(bodies)
        if "m0" in bodies:
            raise redis.ResponseError("WRONGTYPE in the first chunk")
        return [d for d in chunk if d.message.payload == b"m5"]

    keeper = LeaseKeeper(renew, interval=3600, name="test", chunk=2)
    held = [
        Delivery(
            Message(f"id{n}", "t", f"m{n}".encode(), "text/plain", {}, 0.0),
            subscription=None,  # type: ignore[arg-type]  # the keeper never looks at it
        )
        for n in range(6)
    ]
    with keeper._lock:
        keeper._held.update(dict.fromkeys(held))
    with pytest.raises(redis.ResponseError):
        keeper._renew_held()
    assert renewed == [["m0", "m1"], ["m2", "m3"], ["m4", "m5"]]
    assert held[5] not in keeper.held()  # the lost lease was reported and dropped


def test_a_consumers_own_rescue_hands_back_every_part_before_it_fetches(
    server: redis.Redis, redis_server: RedisServer
) -> None:
    """Expired leases found by a consumer's own maintenance (no rescue() call) come
    back in the order rescue() gives them: every bounded call before the next fetch,
    not one fetch between the parts (which took the head of each part out of order)."""
    url = redis_server.url("redis+list")
    count = 3 * RESCUE_LEASES
    crashed = brokerkit.connect(url, visibility_timeout=600)
    other = brokerkit.connect(url)
    try:
        crashed.publish_many("parts", range(count))
        subscription = crashed.subscribe("parts", prefetch=count, consumer="crashed")
        got = [subscription.receive(timeout=10) for _ in range(count)]
        assert [d.body for d in got if d is not None] == list(range(count))
        crashed._suspend_renewals()  # type: ignore[attr-defined]  # a hung process
        details = other.inspect("parts").details
        past = server_ms(server) - 1
        expiry, deadlines = details["expiry_key"], details["deadlines_key"]
        server.hset(expiry, mapping=dict.fromkeys(server.hkeys(expiry), past))
        server.zadd(deadlines, dict.fromkeys(server.zrange(deadlines, 0, -1), past))
        again = other.subscribe("parts", prefetch=1)
        back = [again.receive(timeout=10) for _ in range(count)]
        assert [d.body for d in back if d is not None] == list(range(count))
        other.ack(*back)  # type: ignore[arg-type]
    finally:
        crashed.close()
        other.close()


def test_a_consumers_maintenance_goes_on_the_connection_of_its_fetches(
    server: redis.Redis, redis_server: RedisServer
) -> None:
    """A consumer's maintenance (here the rescue of a dead consumer's leases: its reads,
    the script, the dead consumer's batches read and the script again) goes on the
    connection its fetches use, not through the pool's pipeline and script call (see
    rescue_once); what it hands back is fetched."""
    url = redis_server.url("redis+list")
    crashed = brokerkit.connect(url, visibility_timeout=600)
    other = brokerkit.connect(url)
    try:
        crashed.publish_many("dead", range(3))
        subscription = crashed.subscribe("dead", prefetch=3, consumer="crashed")
        assert [subscription.receive(timeout=10) for _ in range(3)]
        crashed._suspend_renewals()  # type: ignore[attr-defined]  # a hung process
        again = other.subscribe("dead", prefetch=3, consumer="other")
        assert again.receive(timeout=0) is None  # its fetches' connection taken
        details = other.inspect("dead").details
        server.zadd(details["consumers_key"], {"crashed": server_ms(server) - 1})
        # its lease groups unknown: the first call finds the consumer dead, and names it
        # for its batches to be read and declared
        server.delete(details["deadlines_key"])
        again.state.next_maintenance = 0.0  # due now, not half a visibility timeout on
        server.config_set("slowlog-log-slower-than", 0)
        server.slowlog_reset()
        try:
            back = [again.receive(timeout=10) for _ in range(3)]
        finally:
            server.config_set("slowlog-log-slower-than", 10_000)
        assert [d.body for d in back if d is not None] == [0, 1, 2]
        sent = [
            (entry["client_address"], entry["command"].split()[0].upper())
            for entry in server.slowlog_get(1000)
            # the top-level commands on the topic (a script's own run as "?:0" on Redis
            # 7, with no address on Redis 8)
            if entry["client_address"][:1] not in (b"?", b"") and b"dead" in entry["command"]
        ]
        assert {command for _, command in sent} >= {b"ZRANGE", b"HKEYS", b"EVALSHA"}
        assert len({address for address, _ in sent}) == 1, sent
    finally:
        crashed.close()
        other.close()


def test_a_maintenance_read_refused_raises_and_the_consumer_goes_on(
    server: redis.Redis, redis_server: RedisServer
) -> None:
    """A maintenance read the server refuses (the lease groups' key of another type)
    raises from receive, and once the key is put right the consumer fetches on the same
    connection: the error reply was read whole."""
    other = brokerkit.connect(redis_server.url("redis+list"))
    try:
        other.publish("refused", 1)
        deadlines = other.inspect("refused").details["deadlines_key"]
        subscription = other.subscribe("refused")
        first = subscription.receive(timeout=0)  # its connection taken
        assert first is not None
        other.ack(first)
        kept = subscription.state.reader._state.connection
        assert kept is not None
        other.publish("refused", 2)
        subscription.state.next_maintenance = 0.0  # due now
        server.set(deadlines, "not a sorted set")
        with pytest.raises(brokerkit.BrokerError, match="holds a string, not a zset"):
            subscription.receive(timeout=1)
        server.delete(deadlines)
        delivery = subscription.receive(timeout=10)
        assert subscription.state.reader._state.connection is kept
        assert delivery is not None and delivery.body == 2
        other.ack(delivery)
    finally:
        other.close()
