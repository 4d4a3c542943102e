"""redis+stream settlements against a real redis-server when a reply is lost on the
way back, and under a replica wait that cannot be met.

A lost reply: :class:`LossyProxy` stands between the broker and the server; armed with
a script's SHA, it passes the next request that runs that script on to the server
and, when the server's reply comes, closes the broker's connection instead of passing
it on. The server applied the settlement; the broker never heard. A settlement sent
again must not then report as stale what it settled (redis-py's own resend, on a
client built with ``retries=3``, did: the script found its entry gone).

A replica wait that cannot be met: ``replicas=1`` on a server with no replica. A
settlement of several topics sends every topic's script, then raises one
:class:`~brokerkit.ReplicationTimeout` that names what the replicas did not confirm.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.connection import Connection

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.stream.ack_script import ACK
from brokerkit.backends.redis.stream.scripts import NACK
from tests.conftest import RedisTarget
from tests.redis_cluster import RedisClusterSet
from tests.redis_server import RedisServer


def _sha(script: str) -> bytes:
    return hashlib.sha1(script.encode()).hexdigest().encode()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class LossyProxy:
    """A TCP proxy to ``host:port`` that can lose one reply: after :meth:`arm`, the
    next request holding ``marker`` goes to the server, and when its reply comes the
    client's connection is closed instead (the server ran the request).

    :ivar port: where the proxy listens (127.0.0.1).
    :ivar dropped: how many replies it lost.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.dropped = 0
        #: Called when a reply is lost, once the server ran its request and before the
        #: client hears of the loss.
        self.on_drop: Callable[[], None] | None = None
        self._watch: tuple[bytes, Callable[[], None]] | None = None
        self._start(self._accept)

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def arm(self, marker: bytes) -> None:
        """Lose the reply to the next request that holds ``marker``."""
        with self._lock:
            self._marker = marker

    def on_reply(self, marker: bytes, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the reply to the next request that holds ``marker``
        comes from the server, before it is passed on (so before the client can send
        anything more on that connection)."""
        with self._lock:
            self._watch = (marker, callback)

    def _watched(self, data: bytes) -> Callable[[], None] | None:
        with self._lock:
            if self._watch is not None and self._watch[0] in data:
                callback, self._watch = self._watch[1], None
                return callback
        return None

    def _take(self, data: bytes) -> bool:
        with self._lock:
            if self._marker is not None and self._marker in data:
                self._marker = None
                return True
        return False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, server]
            lose = threading.Event()
            then: list[Callable[[], None]] = []  # called at the next reply
            self._start(self._up, client, server, lose, then)
            self._start(self._down, server, client, lose, then)

    def _up(
        self,
        client: socket.socket,
        server: socket.socket,
        lose: threading.Event,
        then: list[Callable[[], None]],
    ) -> None:
        try:
            while data := client.recv(65536):
                if self._take(data):
                    lose.set()  # before the server can answer
                elif callback := self._watched(data):
                    then.append(callback)
                server.sendall(data)
        except OSError:
            pass
        finally:
            _shut(server)

    def _down(
        self,
        server: socket.socket,
        client: socket.socket,
        lose: threading.Event,
        then: list[Callable[[], None]],
    ) -> None:
        try:
            while data := server.recv(65536):
                while then:
                    then.pop()()
                if lose.is_set():
                    # One request at a time on a connection: this is its reply, sent
                    # once the server ran it. It goes nowhere.
                    with self._lock:
                        self.dropped += 1
                    if self.on_drop is not None:
                        self.on_drop()
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            _shut(client)
            _shut(server)

    def __enter__(self) -> LossyProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        _shut(self._listener)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)
        for thread in self._threads:
            thread.join(10)


@pytest.fixture
def admin(redis_target: RedisTarget) -> Iterator[redis.Redis]:
    """A plain client to the server, with the settling scripts loaded (so that the
    request the proxy loses is the one that ran the script, not a NOSCRIPT)."""
    client = redis_target.client()
    client.script_load(ACK)
    client.script_load(NACK)
    yield client
    client.close()


@pytest.fixture
def proxy(redis_target: RedisTarget) -> Iterator[LossyProxy]:
    with LossyProxy(redis_target.host, redis_target.port) as lossy:
        yield lossy


def _url(proxy: LossyProxy, redis_target: RedisTarget, prefix: str) -> str:
    return f"redis+stream://127.0.0.1:{proxy.port}/{redis_target.db}?prefix={prefix}"


def _pending(client: redis.Redis, key: str) -> int:
    return int(client.xpending(key, "g")["pending"])


def _one_delivery(broker: brokerkit.Broker) -> brokerkit.Delivery:
    """A delivery of a message published now to ``jobs``, group ``g``."""
    subscription = broker.subscribe("jobs", group="g")
    broker.publish("jobs", "a")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    return delivery


def test_an_ack_whose_reply_was_lost_is_not_reported_stale(
    proxy: LossyProxy, admin: redis.Redis, redis_target: RedisTarget, prefix: str
) -> None:
    with brokerkit.connect(_url(proxy, redis_target, prefix)) as broker:
        delivery = _one_delivery(broker)
        proxy.arm(_sha(ACK))
        delivery.ack()  # applied, its reply lost, sent again: not stale
        assert proxy.dropped == 1
        assert delivery.settled
        assert _pending(admin, broker.stream_key("jobs")) == 0


def test_a_two_topic_ack_whose_reply_was_lost_is_not_reported_stale(
    proxy: LossyProxy, admin: redis.Redis, redis_target: RedisTarget, prefix: str
) -> None:
    """Both topics' scripts go in one pipeline, whose replies are lost together."""
    with brokerkit.connect(_url(proxy, redis_target, prefix)) as broker:
        got = []
        for topic in ("jobs", "mail"):
            subscription = broker.subscribe(topic, group="g")
            broker.publish(topic, topic)
            got.append(subscription.receive(timeout=5))
        assert None not in got
        proxy.arm(_sha(ACK))
        broker.ack(*[d for d in got if d is not None])
        assert proxy.dropped == 1
        assert [_pending(admin, broker.stream_key(t)) for t in ("jobs", "mail")] == [0, 0]


def test_a_late_ack_whose_reply_was_lost_still_leaves_another_members_claim(
    proxy: LossyProxy, admin: redis.Redis, redis_target: RedisTarget, prefix: str
) -> None:
    """The retry does not excuse everything: an entry another member holds is stale,
    and keeps its delivery, whether or not the first reply was lost."""
    with brokerkit.connect(_url(proxy, redis_target, prefix)) as broker:
        subscription = broker.subscribe("jobs", group="g", prefetch=2)
        broker.publish_many("jobs", ["a", "b"])
        got = [subscription.receive(timeout=5) for _ in range(2)]
        assert None not in got
        first, second = (d for d in got if d is not None)
        key = broker.stream_key("jobs")
        admin.xclaim(key, "g", "other", 0, [second.receipt.entry_id], justid=True)
        proxy.arm(_sha(ACK))
        with pytest.raises(brokerkit.StaleDelivery) as caught:
            broker.ack(first, second)
        assert proxy.dropped == 1
        assert caught.value.deliveries == (second,)
        held = admin.xpending_range(key, "g", "-", "+", 10)
        assert [(p["message_id"].decode(), p["consumer"]) for p in held] == [
            (second.receipt.entry_id, b"other")
        ]


def test_a_dead_letter_whose_reply_was_lost_is_made_once_and_not_stale(
    proxy: LossyProxy, admin: redis.Redis, redis_target: RedisTarget, prefix: str
) -> None:
    with brokerkit.connect(_url(proxy, redis_target, prefix)) as broker:
        delivery = _one_delivery(broker)
        proxy.arm(_sha(NACK))
        delivery.nack(requeue=False)
        assert proxy.dropped == 1
        assert _pending(admin, broker.stream_key("jobs")) == 0
        dead = admin.xrange(broker.stream_key(broker.dead_letter_topic("jobs")))
        assert len(dead) == 1


def test_a_delayed_requeue_whose_reply_was_lost_is_not_reported_stale(
    proxy: LossyProxy, admin: redis.Redis, redis_target: RedisTarget, prefix: str
) -> None:
    with brokerkit.connect(_url(proxy, redis_target, prefix)) as broker:
        delivery = _one_delivery(broker)
        proxy.arm(_sha(NACK))
        delivery.nack(delay=600)  # parked: pending for the group's parking member
        assert proxy.dropped == 1
        assert broker.inspect("jobs").in_flight == 0
        assert _pending(admin, broker.stream_key("jobs")) == 1  # parked, not in flight


def test_an_async_ack_whose_reply_was_lost_is_not_reported_stale(
    proxy: LossyProxy, admin: redis.Redis, redis_target: RedisTarget, prefix: str
) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(_url(proxy, redis_target, prefix)) as broker:
            subscription = await broker.subscribe("jobs", group="g")
            await broker.publish("jobs", "a")
            delivery = await subscription.receive(timeout=5)
            assert delivery is not None
            proxy.arm(_sha(ACK))
            await delivery.ack()
            assert proxy.dropped == 1
            assert _pending(admin, broker.stream_key("jobs")) == 0

    asyncio.run(main())


# -- a replica wait that cannot be met -------------------------------------------------

TOPICS = ("alpha", "beta", "gamma")


def _unreplicated(redis_target: RedisTarget, prefix: str) -> str:
    """A URL whose settlements wait for a replica the server does not have."""
    return redis_target.url("redis+stream", prefix=prefix, replicas="1", replica_timeout="0.01")


def _one_each(broker: brokerkit.Broker) -> list[brokerkit.Delivery]:
    subscriptions = [broker.subscribe(topic, group="g") for topic in TOPICS]
    for topic in TOPICS:
        with pytest.raises(brokerkit.ReplicationTimeout):
            broker.publish(topic, topic)  # stored all the same
    got = [s.receive(timeout=5) for s in subscriptions]
    assert None not in got
    return [d for d in got if d is not None]


def _ack_with_one_claimed(
    broker: brokerkit.Broker, admin: redis.Redis
) -> tuple[list[brokerkit.Delivery], brokerkit.Delivery, Any]:
    """One delivery of each of :data:`TOPICS`, the ``beta`` one claimed by another
    member, then acked all together: (the deliveries, the claimed one, the raised
    ReplicationTimeout's ``pytest.raises`` info)."""
    got = _one_each(broker)
    taken = got[1]
    admin.xclaim(broker.stream_key("beta"), "g", "other", 0, [taken.receipt.entry_id], justid=True)
    with pytest.raises(brokerkit.ReplicationTimeout) as caught:
        broker.ack(*got)
    return got, taken, caught


def test_a_multi_topic_ack_under_a_replica_timeout_acks_every_topic(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    with brokerkit.connect(_unreplicated(redis_target, prefix)) as broker:
        got = _one_each(broker)
        with pytest.raises(brokerkit.ReplicationTimeout) as caught:
            broker.ack(*got)
        assert all(d.settled for d in got)
        assert [_pending(redis_client, broker.stream_key(t)) for t in TOPICS] == [0, 0, 0]
        error = caught.value
        assert (error.acknowledged, error.wanted) == (0, 1)
        assert "applied the ack of 3 deliveries on the master" in str(error)
        assert "0 of the 1 replicas" in str(error)
        assert "'alpha', 'beta', 'gamma'" in str(error)
        assert "Not settled" not in str(error)


def test_a_multi_topic_ack_under_a_replica_timeout_names_what_it_left_to_another(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    """One topic's entry was claimed by another member: the others are acked, and the
    one error says which message was not settled by this ack."""
    with brokerkit.connect(_unreplicated(redis_target, prefix)) as broker:
        _, taken, caught = _ack_with_one_claimed(broker, redis_client)
        assert [_pending(redis_client, broker.stream_key(t)) for t in TOPICS] == [0, 1, 0]
        assert "applied the ack of 2 deliveries on the master" in str(caught.value)
        assert f"Not settled by it: message {taken.id}," in str(caught.value)


def test_a_multi_topic_nack_under_a_replica_timeout_dead_letters_every_topic(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    with brokerkit.connect(_unreplicated(redis_target, prefix)) as broker:
        got = _one_each(broker)
        with pytest.raises(brokerkit.ReplicationTimeout, match="applied the nack of 3"):
            broker.nack(*got, requeue=False)
        assert all(d.settled for d in got)
        for topic in TOPICS:
            assert _pending(redis_client, broker.stream_key(topic)) == 0
            dead = redis_client.xrange(broker.stream_key(broker.dead_letter_topic(topic)))
            assert len(dead) == 1


def test_an_async_multi_topic_ack_under_a_replica_timeout_acks_every_topic(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(_unreplicated(redis_target, prefix)) as broker:
            subscriptions = [await broker.subscribe(t, group="g") for t in TOPICS]
            for topic in TOPICS:
                with pytest.raises(brokerkit.ReplicationTimeout):
                    await broker.publish(topic, topic)
            got = [await s.receive(timeout=5) for s in subscriptions]
            with pytest.raises(brokerkit.ReplicationTimeout, match="'alpha', 'beta', 'gamma'"):
                await broker.ack(*[d for d in got if d is not None])
            assert [_pending(redis_client, broker.stream_key(t)) for t in TOPICS] == [0, 0, 0]

    asyncio.run(main())


def test_an_ack_resent_after_a_lost_reply_still_waits_for_its_replica(prefix: str) -> None:
    """``WAIT`` waits for the writes its own connection made, and the resent ack, on
    a new connection, finds nothing left to write: its wait must still cover what the
    lost attempt wrote (it does: Redis notes the replication offset at every command of
    a connection, a read too). Here the replica is frozen and never gets the ack:
    ReplicationTimeout, not a success."""
    with RedisServer() as master:
        replica = RedisServer().start(replica_of=master)
        try:
            with LossyProxy("127.0.0.1", master.port) as proxy:
                url = f"redis+stream://127.0.0.1:{proxy.port}/0?prefix={prefix}&replicas=1"
                with (
                    brokerkit.connect(url, replica_timeout=30) as publisher,
                    brokerkit.connect(url, replica_timeout=0.2) as broker,
                ):
                    subscription = broker.subscribe("jobs", group="g")
                    publisher.publish("jobs", "a")  # once the replica has it
                    delivery = subscription.receive(timeout=5)
                    assert delivery is not None
                    with contextlib.closing(master.client()) as admin:
                        admin.script_load(ACK)
                    replica.freeze()
                    try:
                        proxy.arm(_sha(ACK))
                        with pytest.raises(brokerkit.ReplicationTimeout, match="0 of the 1"):
                            delivery.ack()
                    finally:
                        replica.thaw()
                    assert proxy.dropped == 1
        finally:
            replica.stop()


def _offset(client: redis.Redis) -> int:
    return int(client.info("replication")["master_repl_offset"])


@pytest.mark.parametrize("how", ["ack", "dead-letter", "delay"])
def test_a_settlement_resent_after_a_lost_reply_writes_before_its_replica_wait(
    prefix: str, how: str
) -> None:
    """The lost attempt applied the settlement, so the resent script finds nothing left
    to do; it must still write, after the lost attempt's writes, on its new connection:
    from Redis 7.2 on, ``WAIT`` waits only for the offset of its connection's last
    write (a connection that wrote nothing: none, the wait returns at once, a frozen
    replica or not). Here the master's replication offset grows across the retry."""
    # No replication pings: only the broker's writes move the offset.
    with RedisServer(config=("--repl-ping-replica-period", "3600")) as master:
        replica = RedisServer().start(replica_of=master)
        try:
            with LossyProxy("127.0.0.1", master.port) as proxy:
                url = (
                    f"redis+stream://127.0.0.1:{proxy.port}/0?prefix={prefix}"
                    "&replicas=1&replica_timeout=30&visibility_timeout=600"
                )
                with (
                    brokerkit.connect(url) as broker,
                    contextlib.closing(master.client()) as admin,
                ):
                    subscription = broker.subscribe("jobs", group="g")
                    broker.publish("jobs", "a")  # once the replica has it
                    delivery = subscription.receive(timeout=5)
                    assert delivery is not None
                    admin.script_load(ACK)
                    admin.script_load(NACK)
                    # The offset when the lost attempt ran, and when the resent one
                    # did (before its WAIT, which moves the offset: REPLCONF GETACK).
                    offsets: list[int] = []
                    sha = _sha(ACK if how == "ack" else NACK)

                    def lost() -> None:
                        offsets.append(_offset(admin))
                        proxy.on_reply(sha, lambda: offsets.append(_offset(admin)))

                    proxy.on_drop = lost
                    proxy.arm(sha)
                    if how == "ack":
                        delivery.ack()
                    elif how == "dead-letter":
                        delivery.nack(requeue=False)
                    else:
                        delivery.nack(delay=600)
                    assert proxy.dropped == 1
                    assert len(offsets) == 2
                    assert offsets[1] > offsets[0]  # the resent script wrote
                    key = broker.stream_key("jobs")
                    assert _pending(admin, key) == (1 if how == "delay" else 0)
                    # what it wrote is gone again
                    assert admin.zrange(f"{key}:delayed:g", 0, -1) == (
                        [delivery.receipt.entry_id.encode()] if how == "delay" else []
                    )
        finally:
            replica.stop()


# -- what a retry reports -----------------------------------------------------------


def test_a_requeue_resent_after_a_lost_reply_leaves_another_members_claim_unreported(
    proxy: LossyProxy, admin: redis.Redis, redis_target: RedisTarget, prefix: str
) -> None:
    """After a lost reply, a requeue of an entry another member holds is not reported
    stale (the lost attempt's requeue may have handed it to that member: the server
    cannot tell), and that member's delivery is left as it is (see scripts.NACK)."""
    with brokerkit.connect(_url(proxy, redis_target, prefix)) as broker:
        delivery = _one_delivery(broker)
        key = broker.stream_key("jobs")
        admin.xclaim(key, "g", "other", 0, [delivery.receipt.entry_id], justid=True)
        proxy.arm(_sha(NACK))
        delivery.nack()  # the first attempt found it stale; its reply was lost
        assert proxy.dropped == 1
        held = admin.xpending_range(key, "g", "-", "+", 10)
        assert [(p["consumer"], p["times_delivered"]) for p in held] == [(b"other", 1)]
        assert held[0]["time_since_delivered"] < 10**9  # not backdated: not requeued


class _SettleHooks:
    """A plugin that writes down what the settlement hooks are told."""

    def __init__(self) -> None:
        self.acked: list[str] = []
        self.lost: list[str] = []

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        self.acked += [d.id for d in deliveries]

    @brokerkit.hookimpl
    def brokerkit_on_lease_lost(self, deliveries: Any) -> None:
        self.lost += [d.id for d in deliveries]


def test_a_replica_timeout_carries_the_stale_deliveries_to_the_hooks(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    """A stream ack under a replica timeout that left one delivery to another member:
    the error holds it in ``stale``, and the hooks hear it was not acked."""
    hooks = _SettleHooks()
    manager = brokerkit.get_plugin_manager()
    manager.register(hooks)
    try:
        with brokerkit.connect(_unreplicated(redis_target, prefix)) as broker:
            got, taken, caught = _ack_with_one_claimed(broker, redis_client)
    finally:
        manager.unregister(hooks)
    assert caught.value.stale == (taken,)
    assert sorted(hooks.acked) == sorted(d.id for d in got if d is not taken)
    assert hooks.lost == [taken.id]


def test_a_replica_timeout_without_stale_deliveries_has_none() -> None:
    assert brokerkit.ReplicationTimeout("short").stale == ()


# -- the clients ---------------------------------------------------------------------


def test_the_reapers_dead_letters_are_never_resent_by_redis_py(
    redis_target: RedisTarget, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reaper dead-letters on the settling client, as every settlement: the
    connection that sends its script retries nothing itself."""
    sent_with: list[int] = []
    send = Connection.send_command

    def send_command(self: Connection, *args: Any, **kwargs: Any) -> None:
        if len(args) > 1 and args[0] == "EVALSHA" and _bytes(args[1]) == _sha(NACK):
            sent_with.append(self.retry._retries)
        send(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "send_command", send_command)
    url = redis_target.url("redis+stream", prefix=prefix, max_deliveries="1")
    with brokerkit.connect(url) as broker:
        subscription = broker.subscribe("jobs", group="g")
        broker.publish("jobs", "a")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        # as the reaper does with an entry it claimed past max_deliveries
        broker._dead_letter_claimed(  # type: ignore[attr-defined]
            subscription, delivery.receipt.entry_id, delivery.message, 1
        )
        dead = broker.inspect(broker.dead_letter_topic("jobs"))
        assert dead.length == 1
    assert sent_with == [0]


def test_a_broker_whose_settling_client_cannot_be_made_closes_its_other_client(
    redis_target: RedisTarget, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brokerkit.backends.redis.stream import broker as stream_broker

    made: list[Any] = []
    closed: list[Any] = []
    real = stream_broker.make_client

    def make_client(*args: Any, retries: int = 3, **kwargs: Any) -> Any:
        if retries == 0:
            raise brokerkit.ConnectionFailed("the settling client could not be made")
        client = real(*args, retries=retries, **kwargs)
        close = client.close
        monkeypatch.setattr(client, "close", lambda: (closed.append(client), close())[1])
        made.append(client)
        return client

    monkeypatch.setattr(stream_broker, "make_client", make_client)
    with pytest.raises(brokerkit.ConnectionFailed, match="settling client"):
        brokerkit.connect(redis_target.url("redis+stream", prefix=prefix))
    assert closed == made != []


# -- on a cluster ----------------------------------------------------------------------


@pytest.fixture
def lose_a_reply(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Lose, in the driver, the reply to the next ``EVALSHA`` of a SHA appended to the
    returned list: the command goes to the server and runs, its reply is read, then the
    connection is dropped and the read fails as a lost connection would. (A proxy
    cannot stand in front of a cluster's nodes: the cluster names their addresses.)"""
    armed: list[bytes] = []
    losing: set[int] = set()
    send, read = Connection.send_command, Connection.read_response

    def send_command(self: Connection, *args: Any, **kwargs: Any) -> None:
        if armed and len(args) > 1 and args[0] == "EVALSHA" and _bytes(args[1]) == armed[0]:
            armed.pop()
            losing.add(id(self))
        send(self, *args, **kwargs)

    def read_response(self: Connection, *args: Any, **kwargs: Any) -> Any:
        reply = read(self, *args, **kwargs)
        if id(self) in losing:
            losing.discard(id(self))
            self.disconnect()
            raise redis.ConnectionError("the reply was lost with the connection")
        return reply

    monkeypatch.setattr(Connection, "send_command", send_command)
    monkeypatch.setattr(Connection, "read_response", read_response)
    return armed


def _bytes(value: object) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)  # type: ignore[call-overload]


@pytest.mark.parametrize("replicas", ["0", "1"])
def test_an_ack_on_a_cluster_whose_reply_was_lost_is_not_reported_stale(
    redis_cluster: RedisClusterSet, prefix: str, lose_a_reply: list[bytes], replicas: str
) -> None:
    """On a cluster the ack runs on the cluster client, or with ``replicas`` on a
    connection to the key's master: neither resends it unflagged."""
    url = redis_cluster.url("redis+stream", prefix=prefix, replicas=replicas, replica_timeout="5")
    with brokerkit.connect(url) as broker:
        delivery = _one_delivery(broker)
        lose_a_reply.append(_sha(ACK))
        delivery.ack()
        assert lose_a_reply == []  # armed, then used
        assert broker.inspect("jobs").in_flight == 0
