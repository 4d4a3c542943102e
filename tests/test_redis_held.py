"""A subscription's reads (redis+stream, redis+list) run on a connection it keeps,
which is never shared while held and never given back to the pool with a reply still
to come (``redis/_held_async.py``). The reader against a fake pool, then subscriptions
against a real redis-server."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

import brokerkit.aio
from brokerkit.backends.redis import _held as reader_module
from brokerkit.backends.redis import _held_state as state_module
from brokerkit.backends.redis._held import Reader
from brokerkit.backends.redis._held_async import AsyncReader
from brokerkit.backends.redis.stream import RedisStreamBroker
from tests.conftest import RedisTarget
from tests.redis_stream_aio_support import poll

Make = Callable[..., RedisStreamBroker]


class _Connection:
    """Replies from a script: each reply, or an exception to raise, in turn."""

    def __init__(self, number: int, replies: list[Any]) -> None:
        self.number = number
        self.replies = replies
        self.sent: list[tuple[Any, ...]] = []
        self.connected = True
        self.during_read: Callable[[], None] | None = None
        self.closed_by_server = False
        self.disconnects = 0

    def connect(self) -> None:  # (a send opens its connection first, as redis-py's)
        self.connected = True

    def pack_commands(self, commands: tuple[tuple[Any, ...], ...]) -> list[tuple[Any, ...]]:
        return list(commands)

    def send_packed_command(self, packed: list[tuple[Any, ...]]) -> None:
        self.sent += packed

    def read_response(self) -> Any:
        if self.during_read is not None:
            self.during_read()
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def disconnect(self) -> None:
        self.connected = False
        self.closed_by_server = False
        self.disconnects += 1

    def can_read(self) -> bool:
        return self.closed_by_server


class _Pool:
    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.made: list[_Connection] = []
        self.released: list[_Connection] = []

    def get_connection(self) -> _Connection:
        connection = _Connection(len(self.made), self.replies)
        self.made.append(connection)
        return connection

    def release(self, connection: _Connection) -> None:
        self.released.append(connection)


class _Client:
    def __init__(self, pool: _Pool) -> None:
        self.connection_pool = pool


def _reader(replies: list[Any]) -> tuple[Reader, _Pool]:
    pool = _Pool(replies)
    return Reader(_Client(pool)), pool


def test_reads_share_one_connection_until_close_gives_it_back() -> None:
    reader, pool = _reader(["a", "b"])
    assert reader.execute("XREADGROUP", 1) == "a"
    assert reader.execute("XREADGROUP", 2) == "b"
    assert len(pool.made) == 1
    assert pool.made[0].sent == [("XREADGROUP", 1), ("XREADGROUP", 2)]
    assert pool.released == []
    reader.close()
    assert pool.released == pool.made
    assert pool.made[0].connected


def test_an_error_reply_keeps_the_connection() -> None:
    reader, pool = _reader([ResponseError("NOGROUP no such group"), "after"])
    with pytest.raises(ResponseError):
        reader.execute("XREADGROUP")
    assert reader.execute("XREADGROUP") == "after"
    assert len(pool.made) == 1
    assert pool.released == []


@pytest.mark.parametrize("failure", [RedisConnectionError("lost"), KeyboardInterrupt()])
def test_a_failed_read_drops_its_connection_and_the_next_takes_a_new_one(
    failure: BaseException,
) -> None:
    """A reply may still be on its way: the connection is disconnected before it
    goes back to the pool, and never used again."""
    reader, pool = _reader([failure, "after"])
    with pytest.raises(type(failure)):
        reader.execute("XREADGROUP")
    first = pool.made[0]
    assert not first.connected
    assert pool.released == [first]
    assert reader.execute("XREADGROUP") == "after"
    assert len(pool.made) == 2
    reader.close()
    assert pool.released == pool.made


@pytest.mark.parametrize("fails", [False, True])
def test_a_close_during_a_read_leaves_the_connection_to_that_read(fails: bool) -> None:
    """A cancelled receive's fetch runs on while the subscription closes: the read
    gives the connection back when it ends, once."""
    reader, pool = _reader([RedisConnectionError("lost") if fails else "late"])
    connection = pool.get_connection()
    pool.made.clear()

    def close_now() -> None:
        reader.close()
        assert pool.released == []  # not while the reply is on its way

    connection.during_read = close_now
    reader._state.keep(connection, reader_module.os.getpid())
    if fails:
        with pytest.raises(RedisConnectionError):
            reader.execute("XREADGROUP")
    else:
        assert reader.execute("XREADGROUP") == "late"
    assert pool.released == [connection]
    assert connection.connected is not fails
    # a read after the close (the fetch's retry) gives its connection back too
    pool.replies.append("retried")
    assert reader.execute("XREADGROUP") == "retried"
    assert pool.released == [connection, *pool.made]


def test_a_close_from_another_thread_never_gives_back_a_connection_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sync twin's race: a close in another thread lands just as a command takes
    the kept connection (here: when the command asks for the process id, as it does
    before it takes one). Either the close gives it back first and the command takes
    another, or the command gives it back when it ends: never one still in use."""
    reader, pool = _reader(["first", "second"])
    assert reader.execute("XREADGROUP", 1) == "first"
    kept = pool.made[0]
    real_getpid = reader_module.os.getpid
    released_by_close: list[_Connection] = []

    def close_meanwhile() -> int:
        monkeypatch.setattr(reader_module.os, "getpid", real_getpid)
        reader.close()
        released_by_close.extend(pool.released)
        return real_getpid()

    monkeypatch.setattr(reader_module.os, "getpid", close_meanwhile)
    assert reader.execute("XREADGROUP", 2) == "second"
    assert released_by_close == [kept]
    assert kept.sent == [("XREADGROUP", 1)]  # not used once given back
    # the command's own connection went back at its end, each one once
    assert pool.released == pool.made and len(pool.made) == 2


def test_a_close_while_a_command_takes_a_new_connection_leaves_it_to_that_command() -> None:
    """The close lands after the command marked the kept connection busy but before it
    kept the one it is taking from the pool: the command gives that one back at its
    end, once."""
    reader, pool = _reader(["first"])
    take = pool.get_connection

    def take_while_closing() -> _Connection:
        reader.close()
        assert pool.released == []
        return take()

    pool.get_connection = take_while_closing  # type: ignore[method-assign]
    assert reader.execute("XREADGROUP") == "first"
    assert pool.released == pool.made and len(pool.made) == 1


def test_a_command_sent_now_keeps_its_connection_until_its_replies_are_read() -> None:
    """``send`` (redis+list's lease of a woken delivery): the kept connection is that
    command's until ``replies`` reads them, once; a command meanwhile takes one of its
    own, and a close meanwhile leaves the connection to the sent command."""
    reader, pool = _reader(["first", "meanwhile", "leased"])
    assert reader.execute("BLMOVE") == "first"
    kept = pool.made[0]
    packed = reader.pack(("EVALSHA", "sha", 1, "k"))
    assert packed == [("EVALSHA", "sha", 1, "k")]  # the kept connection's packer
    sent = reader.send(("EVALSHA", "sha", 1, "k"), packed=packed)
    assert kept.sent == [("BLMOVE",), ("EVALSHA", "sha", 1, "k")]
    assert reader.execute("LRANGE") == "meanwhile"
    spare = pool.made[1]
    assert spare.sent == [("LRANGE",)] and pool.released == [spare]
    reader.close()
    assert pool.released == [spare]  # not while a reply is to come
    assert sent.replies() == ["leased"]
    assert pool.released == [spare, kept]
    with pytest.raises(RuntimeError):
        sent.replies()


def test_a_command_sent_while_one_is_under_way_goes_on_a_connection_of_its_own() -> None:
    reader, pool = _reader(["first", "leased"])
    assert reader.execute("BLMOVE") == "first"
    kept = pool.made[0]
    reader._state.begin(reader_module.os.getpid())  # a command under way on it
    sent = reader.send(("EVALSHA", "sha", 0))
    spare = pool.made[1]
    assert spare.sent == [("EVALSHA", "sha", 0)] and pool.released == []
    assert sent.replies() == ["leased"]
    assert pool.released == [spare] and spare.connected  # back to the pool, whole
    assert kept.sent == [("BLMOVE",)]


@pytest.mark.parametrize("on", ["kept", "spare"])
def test_a_failed_read_whose_disconnect_fails_too_still_gives_the_connection_back(
    on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection whose command failed goes back to the pool even when closing it
    fails as well (a timeout closing the socket, a second cancellation): the pool never
    counts it in use for good."""

    def disconnect_fails(self: _Connection) -> None:
        self.connected = False
        raise redis.TimeoutError("closing failed too")

    monkeypatch.setattr(_Connection, "disconnect", disconnect_fails)
    reader, pool = _reader(["first", RedisConnectionError("lost")])
    assert reader.execute("BLMOVE") == "first"
    if on == "spare":
        reader._state.begin(reader_module.os.getpid())  # a command under way on the kept one
    with pytest.raises(RedisConnectionError, match="lost"):  # the command's own failure
        reader.execute("EVALSHA", "sha", 0)
    failed = pool.made[-1]
    assert failed in pool.released and not failed.connected


def test_a_failed_read_of_sent_replies_drops_the_connection() -> None:
    reader, pool = _reader([RedisConnectionError("lost"), "after"])
    sent = reader.send(("EVALSHA", "sha", 0))
    with pytest.raises(RedisConnectionError):
        sent.replies()
    first = pool.made[0]
    assert not first.connected and pool.released == [first]
    assert reader.pack(("PING",)) is None  # none kept now: send packs it
    assert reader.execute("PING") == "after"
    assert len(pool.made) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_takes_its_readers_lock_anew() -> None:
    """A lock another thread of the parent held at the fork would never be released in
    the child: each reader's lock is made anew there."""
    reader, _ = _reader([])
    lock = reader._state._lock
    lock.acquire()  # held, as by another thread, when the process forks
    try:
        child = os.fork()
        if child == 0:  # the child: its lock is free
            os._exit(0 if reader._state._lock.acquire(blocking=False) else 1)
        _, status = os.waitpid(child, 0)
    finally:
        lock.release()
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("idle", [False, True])
def test_a_connection_idle_a_while_is_looked_at_before_its_next_command(
    idle: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As redis-py's pool looks at each connection it hands out: a kept connection the
    server closed while it sat idle is opened again before the command (the send
    connects it), not left to fail it; one in steady use is not looked at."""
    reader, pool = _reader(["first", "second"])
    assert reader.execute("XREADGROUP") == "first"
    kept = pool.made[0]
    kept.closed_by_server = True
    monkeypatch.setattr(state_module, "IDLE_CHECK", 0.0 if idle else 3600.0)
    assert reader.execute("XREADGROUP") == "second"
    assert kept.disconnects == int(idle)  # disconnected: the send connects it again
    assert kept.connected
    assert len(pool.made) == 1 and pool.released == []


def test_a_forked_child_never_uses_its_parents_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader, pool = _reader(["parent", "child"])
    assert reader.execute("XREADGROUP") == "parent"
    parents = pool.made[0]
    monkeypatch.setattr(reader_module.os, "getpid", lambda: -1)
    assert reader.execute("XREADGROUP") == "child"
    assert len(pool.made) == 2 and parents.sent == [("XREADGROUP",)]
    reader.close()
    assert pool.released == [pool.made[1]]  # the parent's is not the child's pool's


def test_a_client_without_one_pool_reads_through_execute_command() -> None:
    """A cluster client routes each command to a node: no connection is kept."""

    class Cluster:
        def execute_command(self, *args: Any) -> Any:
            return ("routed", args)

    reader = Reader(Cluster())
    assert reader.execute("XREADGROUP", "x") == ("routed", ("XREADGROUP", "x"))
    reader.close()


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    return functools.partial(redis_broker, "redis+stream")


def test_a_subscription_reads_on_one_connection_and_gives_it_back_on_close(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    pool: Any = broker._client.connection_pool
    for round_ in range(3):
        broker.publish_many("jobs", [f"{round_}a", f"{round_}b"])
        got = [subscription.receive(timeout=5) for _ in range(2)]
        assert None not in got
        broker.ack(*[d for d in got if d is not None])
    held = subscription.state.reader._state.connection
    assert held is not None and held in pool._in_use_connections
    subscription.close()
    assert held not in pool._in_use_connections
    assert held in pool._available_connections


def test_a_read_connection_killed_by_the_server_is_replaced(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make(reconnect_timeout=5)
    subscription = broker.subscribe("jobs", group="g")
    broker.publish("jobs", "first")
    first = subscription.receive(timeout=5)
    assert first is not None and first.body == "first"
    first.ack()
    host, port = subscription.state.reader._state.connection._sock.getsockname()[:2]
    assert redis_client.client_kill_filter(addr=f"{host}:{port}") == 1
    broker.publish("jobs", "second")
    second = subscription.receive(timeout=5)
    assert second is not None and second.body == "second"
    second.ack()
    # (redis-py may hand back the same Connection object: connected anew)
    now = subscription.state.reader._state.connection
    assert now._sock.getsockname()[:2] != (host, port)
    subscription.close()


def test_settlements_take_the_settling_connection_and_reload_flushed_scripts(
    make: Make, redis_client: redis.Redis
) -> None:
    """An ack runs on the settling connection the broker keeps; after SCRIPT FLUSH its
    EVALSHA answers NOSCRIPT there, and the script is loaded and run again."""
    broker = make()
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    held = broker._settle_held.reader
    for round_ in range(2):
        broker.publish_many("jobs", [f"{round_}a", f"{round_}b"])
        got = [subscription.receive(timeout=5) for _ in range(2)]
        assert None not in got
        if round_ == 1:
            redis_client.script_flush()
        broker.ack(*[d for d in got if d is not None])
        assert held._state.connection is not None
    assert redis_client.xpending(broker.stream_key("jobs"), "g")["pending"] == 0
    broker.close()
    assert held._state.connection is None


def test_many_commands_go_at_once_and_an_error_reply_comes_back_in_its_place() -> None:
    reader, pool = _reader(["a", redis.ResponseError("NOSCRIPT no script"), "c", "d"])
    replies = reader.execute_many(("A", 1), ("B",), ("C",))
    assert replies[0] == "a" and replies[2] == "c"
    assert isinstance(replies[1], redis.ResponseError)
    assert reader.execute("D") == "d"  # the same connection, still in step
    assert pool.made[0].sent == [("A", 1), ("B",), ("C",), ("D",)]
    assert pool.made[0].connected and pool.released == []


def test_a_connection_lost_amid_many_replies_is_given_back_disconnected() -> None:
    reader, pool = _reader(["a", redis.ConnectionError("gone"), "b"])
    with pytest.raises(redis.ConnectionError):
        reader.execute_many(("A",), ("B",))
    assert pool.released == [pool.made[0]] and not pool.made[0].connected
    assert reader.execute("C") == "b"  # on a new connection
    assert len(pool.made) == 2


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_receives_cancelled_while_waiting_leave_the_next_one_working(
    scheme: str, redis_target: RedisTarget, prefix: str
) -> None:
    # Each cancelled receive's fetch runs on, waiting in BLMOVE or XREADGROUP on the
    # subscription's kept connection: the next fetch must not read from it too.
    async def main() -> None:
        url = redis_target.url(scheme)
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            subscription = await broker.subscribe("jobs")
            for _ in range(3):
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(subscription.receive(), 0.05)
            await broker.publish("jobs", "hello")
            delivery = await subscription.receive(timeout=5)
            assert delivery is not None and delivery.body == "hello"
            await delivery.ack()

    asyncio.run(main())


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_publishes_from_many_threads_and_tasks_share_the_kept_connection_or_the_pools(
    scheme: str, redis_target: RedisTarget, prefix: str
) -> None:
    """A single publish goes on the connection the broker keeps for publishes when it
    is free, else on one of the pool's: from many threads (sync) and many tasks
    (asyncio) at once, every message arrives once, and the kept one is used."""
    url = redis_target.url(scheme)
    with brokerkit.connect(url, prefix=prefix) as broker:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: broker.publish("jobs", n), range(400)))
        assert broker._sender._state.connection is not None  # type: ignore[attr-defined]
        got = list(broker.consume("jobs", prefetch=100, limit=400, timeout=5))
        broker.ack(*got)
        assert sorted(d.body for d in got) == list(range(400))

    async def main() -> list[Any]:
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await asyncio.gather(*(broker.publish("tasks", n) for n in range(400)))
            subscription = await broker.subscribe("tasks", prefetch=100)
            bodies = []
            for _ in range(400):
                delivery = await subscription.receive(timeout=5)
                assert delivery is not None
                bodies.append(delivery.body)
                await delivery.ack()
            return bodies

    assert sorted(asyncio.run(main())) == list(range(400))


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_acks_from_many_threads_and_tasks_share_the_settling_connection_or_the_pools(
    scheme: str, redis_target: RedisTarget, prefix: str
) -> None:
    """A settlement goes on the connection the broker keeps for settlements when it is
    free, else on one of the pool's (sent and read as on the kept one): from many
    threads (sync) and many tasks (asyncio) at once, every ack is applied once and
    nothing is left in flight."""
    url = redis_target.url(scheme)
    with brokerkit.connect(url, prefix=prefix) as broker:
        broker.publish_many("jobs", range(400))
        got = list(broker.consume("jobs", prefetch=100, limit=400, timeout=5))
        assert sorted(d.body for d in got) == list(range(400))
        settling: Any = broker._settle_held.reader  # type: ignore[attr-defined]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda d: broker.ack(d), got[:200]))
            # the settling connection busy all along: every ack on one of the pool's
            kept = settling._state.connection
            assert kept is not None and not settling._state.begin(os.getpid())[0]
            try:
                list(pool.map(lambda d: broker.ack(d), got[200:]))
            finally:
                settling._state.end(kept)
        assert broker.inspect("jobs").in_flight == 0
        # and each went back to its pool: none in use but the ones kept
        readers = [settling, broker._sender]  # type: ignore[attr-defined]
        in_use = {c for r in readers for c in r._pool._in_use_connections}
        assert in_use <= {r._state.connection for r in readers}

    async def main() -> int:
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish_many("tasks", range(400))
            subscription = await broker.subscribe("tasks", prefetch=100)
            deliveries = [await subscription.receive(timeout=5) for _ in range(400)]
            assert None not in deliveries
            await asyncio.gather(*(d.ack() for d in deliveries if d is not None))
            await subscription.close()
            return (await broker.inspect("tasks")).in_flight

    assert asyncio.run(main()) == 0


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_a_publish_after_the_server_closed_the_idle_kept_connection_goes_through(
    scheme: str, redis_server: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no time to reconnect (reconnect_timeout=0), a publish on the kept
    connection that the server closed meanwhile still goes through: the connection is
    looked at first (here after any idle time), as the pool would."""
    monkeypatch.setattr(state_module, "IDLE_CHECK", 0.0)
    admin = redis_server.client()
    with brokerkit.connect(redis_server.url(scheme), prefix=prefix, reconnect_timeout=0) as broker:
        broker.publish("jobs", "before")
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        broker.publish("jobs", "after")
        got = list(broker.consume("jobs", limit=2, timeout=5))
        broker.ack(*got)
        assert [d.body for d in got] == ["before", "after"]


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_under_asyncio_a_publish_after_the_server_closed_the_kept_connection_goes_through(
    scheme: str, redis_server: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "IDLE_CHECK", 0.0)
    admin = redis_server.client()

    async def main() -> list[Any]:
        url = redis_server.url(scheme)
        async with brokerkit.aio.connect(url, prefix=prefix, reconnect_timeout=0) as broker:
            await broker.publish("jobs", "before")
            assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
            await broker.publish("jobs", "after")
            subscription = await broker.subscribe("jobs", prefetch=2)
            got = [await subscription.receive(timeout=5) for _ in range(2)]
            for delivery in got:
                assert delivery is not None
                await delivery.ack()
            return [d.body for d in got if d is not None]

    assert asyncio.run(main()) == ["before", "after"]


@pytest.mark.parametrize("spare", [False, True], ids=["kept", "spare"])
def test_under_asyncio_a_cancelled_command_gives_its_connection_back_to_the_pool(
    spare: bool, redis_target: RedisTarget, prefix: str
) -> None:
    """A command cut off by a cancellation while it waits for its reply, on the kept
    connection (``kept``) or on one of the pool's taken because the kept one was busy
    (``spare``), leaves its connection disconnected and back in the pool: never in use
    for good (a bounded pool would run dry), never kept with a reply to come."""
    admin = redis_target.client()
    name = prefix.replace(":", "-")

    def blocked() -> int:  # this test's own connections waiting in a blocking command
        return sum(1 for c in admin.client_list() if c["name"] == name and "b" in c["flags"])

    async def cancelled(task: asyncio.Task[Any]) -> None:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def main() -> None:
        # No socket timeout (redis-py's default is 5 s): only the cancellation ends the
        # BLPOPs, however slowly the machine gets them blocking.
        client = redis.asyncio.Redis(
            host=redis_target.host,
            port=redis_target.port,
            db=redis_target.db,
            client_name=name,
            socket_timeout=None,
        )
        pool = client.connection_pool
        reader = AsyncReader(client)
        kept = None
        if spare:  # the kept connection busy, waiting in a BLPOP of its own
            kept = asyncio.create_task(reader.execute("BLPOP", f"{prefix}:other", 60))
            await poll(lambda: blocked() >= 1, within=10)
        task = asyncio.create_task(reader.execute("BLPOP", f"{prefix}:empty", 60))
        await poll(lambda: blocked() >= 1 + spare, within=10)
        await cancelled(task)
        assert len(pool._in_use_connections) == spare
        if kept is not None:
            await cancelled(kept)
        assert not pool._in_use_connections, "a connection was never given back"
        assert not any(c.is_connected for c in pool._available_connections)
        await reader.close()
        await client.aclose()

    try:
        asyncio.run(main())
    finally:
        admin.close()


def test_a_run_of_one_command_is_packed_once_into_the_same_bytes(
    redis_target: RedisTarget,
) -> None:
    client = redis_target.client()
    reader = Reader(client)
    assert reader.pack(("PING",)) is None  # no connection kept yet
    reader.execute("PING")
    commands = [("MULTI",), *[("LPUSH", "bk-held-pack", "x")] * 50, ("DEL", "bk-held-pack")]
    commands += [("SET", "bk-held-pack", 1), ("SET", "bk-held-pack", 1.0), ("EXEC",)]
    packed = reader.pack(*commands)
    assert packed is not None and len(packed) <= 3
    connection = client.connection_pool.get_connection()
    try:
        assert b"".join(packed) == b"".join(connection.pack_commands(commands))
    finally:
        client.connection_pool.release(connection)
    replies = reader.execute_many(*commands, packed=packed)
    assert replies[-1] == [*range(1, 51), 1, b"OK", b"OK"]
    assert client.get("bk-held-pack") == b"1.0"  # equal tuples, not one: packed apart
    client.delete("bk-held-pack")
    reader.close()
    client.close()
