"""A kept connection's replies that came with one ``read_response`` are taken from
hiredis's buffer (``brokerkit/backends/redis/_buffered.py``): the reader returns, on a
real server, exactly what redis-py's ``read_response`` returns for the same commands,
one by one: error replies in place, nested errors, values split across socket reads,
RESP2 and RESP3, sync and asyncio; a connection error among them is raised and the
connection dropped; a RESP3 push among them goes to the parser's handler."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis._parsers import _RESP2Parser, _RESP3Parser
from redis.exceptions import BusyLoadingError, ResponseError

from brokerkit.backends.redis._buffered import NOT_BUFFERED, BufferedReplies
from brokerkit.backends.redis._held import Reader
from brokerkit.backends.redis._held_async import AsyncReader
from tests.conftest import RedisTarget

_NESTED = "return {1, {2, redis.error_reply('E nested')}, ARGV[1], {}}"
_RESP3_SCRIPTS = [
    f"redis.setresp(3); return {value}"
    for value in (
        "false",
        "true",
        "{double=1.5}",
        "{big_number='123456789012345678901234567890'}",
        "{map={a=1, b={false, 'x'}}}",
        "{set={a=true}}",
        "{verbatim_string={format='txt', string='text'}}",
        "nil",
    )
]
_VALUES = st.one_of(
    st.binary(max_size=40),
    # longer than one socket read (64 KB)
    st.tuples(st.binary(min_size=1, max_size=4), st.integers(60_000, 140_000)).map(
        lambda pair: pair[0] * (pair[1] // len(pair[0]))
    ),
)


def _commands(key: str) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """Commands whose replies are of every RESP2 kind and most RESP3 ones: statuses,
    bulk strings (some longer than one socket read), integers, nils, arrays, nested
    arrays with an error inside, maps, error replies (a string INCRed, a list command
    on a string, an EXEC without MULTI)."""
    one = st.one_of(
        _VALUES.map(lambda v: ("SET", key, v)),
        st.just(("GET", key)),
        st.just(("INCR", key)),
        _VALUES.map(lambda v: ("LPUSH", key, v)),
        _VALUES.map(lambda v: ("EVAL", _NESTED, 0, v)),
        st.just(("EVAL", "return redis.error_reply('E top')", 0)),
        st.just(("HSET", f"{key}:h", "f", "v")),
        st.just(("HGETALL", f"{key}:h")),
        st.just(("EXEC",)),
        st.just(("DEL", key)),
        _VALUES.map(lambda v: ("ECHO", v)),
        # RESP3's own kinds (RESP2's equivalents on a RESP2 connection); a boolean false
        # must not read as hiredis's "not enough data"
        st.sampled_from(_RESP3_SCRIPTS).map(lambda script: ("EVAL", script, 0)),
    )
    return st.lists(one, min_size=1, max_size=12)


def _plain(replies: list[Any]) -> list[Any]:
    """Replies compared by value: an error reply by its type and text."""

    def one(reply: Any) -> Any:
        if isinstance(reply, Exception):
            return (type(reply), str(reply))
        if isinstance(reply, list):
            return [one(r) for r in reply]
        return reply

    return [one(r) for r in replies]


def _read_by_redis_py(connection: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    connection.send_packed_command(connection.pack_commands(commands))
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(connection.read_response())
        except ResponseError as exc:
            replies.append(exc)
    return replies


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def clients(
    request: pytest.FixtureRequest, redis_target: RedisTarget
) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """Two clients of one protocol: one for the reader, one read by redis-py alone."""
    made = [
        redis.Redis(
            host=redis_target.host,
            port=redis_target.port,
            db=redis_target.db,
            protocol=request.param,
            socket_timeout=10,
        )
        for _ in range(2)
    ]
    yield made[0], made[1]
    for client in made:
        client.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_the_reader_returns_what_read_response_returns(
    clients: tuple[redis.Redis, redis.Redis], prefix: str, data: st.DataObject
) -> None:
    ours, theirs = clients
    key = f"{prefix}:replies"
    commands = data.draw(_commands(key))
    reader = Reader(ours)
    connection = theirs.connection_pool.get_connection()
    try:
        ours.delete(key, f"{key}:h")
        got = reader.execute_many(*commands)
        ours.delete(key, f"{key}:h")
        expected = _read_by_redis_py(connection, commands)
    finally:
        theirs.connection_pool.release(connection)
        reader.close()
        ours.delete(key, f"{key}:h")
    assert _plain(got) == _plain(expected)


@pytest.mark.parametrize("protocol", [2, 3])
def test_the_async_reader_returns_what_read_response_returns(
    redis_target: RedisTarget, prefix: str, protocol: int
) -> None:
    key = f"{prefix}:replies"
    big = b"b" * 200_000  # several socket reads
    commands: list[tuple[Any, ...]] = [
        ("MULTI",),
        *[("LPUSH", key, big)] * 3,
        ("LMOVE", key, f"{key}:2", "RIGHT", "RIGHT"),
        ("INCR", key),
        ("EXEC",),
        ("EVAL", _NESTED, 0, big),
        ("GET", key),
        ("HSET", f"{key}:h", "f", "v"),
        ("HGETALL", f"{key}:h"),
        ("DEL", key, f"{key}:2", f"{key}:h"),
    ]

    async def main() -> tuple[list[Any], list[Any]]:
        options: dict[str, Any] = {
            "host": redis_target.host,
            "port": redis_target.port,
            "db": redis_target.db,
        }
        ours = aioredis.Redis(protocol=protocol, **options)
        reader = AsyncReader(ours)
        try:
            got = await reader.execute_many(*commands)
        finally:
            await reader.close()
            await ours.aclose()
        theirs = redis.Redis(protocol=protocol, **options)
        connection = theirs.connection_pool.get_connection()
        try:
            return got, _read_by_redis_py(connection, commands)
        finally:
            theirs.connection_pool.release(connection)
            theirs.close()

    got, expected = asyncio.run(main())
    assert _plain(got) == _plain(expected)
    assert got[6][3] == big  # in an EXEC's array, whole


@pytest.mark.parametrize("parser", [_RESP2Parser, _RESP3Parser])
def test_redis_pys_own_parser_reads_through_read_response(
    redis_target: RedisTarget, parser: type
) -> None:
    pool = redis.ConnectionPool(
        host=redis_target.host,
        port=redis_target.port,
        db=redis_target.db,
        protocol=3 if parser is _RESP3Parser else 2,
        parser_class=parser,
    )
    client = redis.Redis(connection_pool=pool)
    reader = Reader(client)
    try:
        replies = reader.execute_many(
            ("PING",), ("ECHO", "x"), ("EVAL", "return redis.error_reply('E x')", 0)
        )
        assert replies[:2] == [b"PONG", b"x"]
        assert isinstance(replies[2], ResponseError)
        connection = client.connection_pool.get_connection()
        try:
            assert BufferedReplies(connection).take() is NOT_BUFFERED
        finally:
            client.connection_pool.release(connection)
    finally:
        reader.close()
        client.close()


def test_a_connection_error_among_buffered_replies_is_raised_and_the_connection_dropped(
    redis_client: redis.Redis,
) -> None:
    """``LOADING`` is a connection error to redis-py (the server is loading its data):
    raised from the buffer as read_response raises it; the reader's next command goes
    on a new connection, not on one with replies still to come."""
    reader = Reader(redis_client)
    try:
        loading = ("EVAL", "return redis.error_reply('LOADING not really')", 0)
        with pytest.raises(BusyLoadingError):
            reader.execute_many(("PING",), loading, ("ECHO", "after"))
        with pytest.raises(BusyLoadingError):  # first in an array
            reader.execute_many(("PING",), ("EVAL", _nested_loading(), 0), ("PING",))
        assert reader.execute_many(("ECHO", "a"), ("ECHO", "b")) == [b"a", b"b"]
    finally:
        reader.close()


def _nested_loading() -> str:
    return "return {redis.error_reply('LOADING not really'), 1}"


@pytest.fixture
def tracked(redis_target: RedisTarget, prefix: str) -> Iterator[tuple[Reader, str, list[Any]]]:
    """A RESP3 reader keeping its connection, whose parser hands invalidation pushes
    to the list given with it, and the key its tests track."""
    client = redis.Redis(
        host=redis_target.host, port=redis_target.port, db=redis_target.db, protocol=3
    )
    key = f"{prefix}:tracked"
    reader = Reader(client)
    handled: list[Any] = []
    try:
        reader.execute("PING")  # the reader keeps its connection from here on
        reader._state.connection._parser.set_invalidation_push_handler(handled.append)
        yield reader, key, handled
    finally:
        reader.close()
        client.delete(key)
        client.close()


def test_a_push_among_buffered_replies_goes_to_the_parsers_handler(
    tracked: tuple[Reader, str, list[Any]],
) -> None:
    """RESP3: with client tracking on, the connection's own SET of a key it read sends
    it an invalidation push, which comes among the replies: the replies stay in order
    and the push reaches the parser's handler, as read_response hands it on."""
    reader, key, handled = tracked
    replies = reader.execute_many(
        ("CLIENT", "TRACKING", "ON"),
        ("GET", key),
        ("SET", key, "x"),
        ("GET", key),
        ("SET", key, "y"),
        ("ECHO", "last"),
        ("CLIENT", "TRACKING", "OFF"),
    )
    assert replies == [b"OK", None, b"OK", b"x", b"OK", b"last", b"OK"]
    assert [push[0] for push in handled] == [b"invalidate", b"invalidate"]


def test_a_push_before_a_connection_error_is_handed_on_before_the_error(
    tracked: tuple[Reader, str, list[Any]],
) -> None:
    """A push that came before a connection error among the buffered replies reaches
    the handler before the error is raised, as read_response hands a push on before it
    reads what follows."""
    reader, key, handled = tracked
    reader.execute_many(("CLIENT", "TRACKING", "ON"), ("GET", key))
    loading = ("EVAL", "return redis.error_reply('LOADING not really')", 0)
    with pytest.raises(BusyLoadingError):
        reader.execute_many(("PING",), ("SET", key, "x"), loading, ("ECHO", "after"))
    assert [push[0] for push in handled] == [b"invalidate"]


def test_the_async_reader_hands_a_push_to_the_parsers_handler(
    redis_target: RedisTarget, prefix: str
) -> None:
    """The asyncio twin of the test above: the push goes to the parser's (coroutine)
    handler, the replies stay in order."""
    key = f"{prefix}:tracked"
    handled: list[Any] = []

    async def handle(push: Any) -> None:
        handled.append(push)

    async def main() -> list[Any]:
        client = aioredis.Redis(
            host=redis_target.host, port=redis_target.port, db=redis_target.db, protocol=3
        )
        reader = AsyncReader(client)
        try:
            await reader.execute("PING")
            reader._state.connection._parser.set_invalidation_push_handler(handle)
            return await reader.execute_many(
                ("CLIENT", "TRACKING", "ON"),
                ("GET", key),
                ("SET", key, "x"),
                ("GET", key),
                ("ECHO", "last"),
                ("CLIENT", "TRACKING", "OFF"),
                ("DEL", key),
            )
        finally:
            await reader.close()
            await client.aclose()

    replies = asyncio.run(main())
    assert replies == [b"OK", None, b"OK", b"x", b"last", b"OK", 1]
    assert [push[0] for push in handled] == [b"invalidate"]


class _Overriding(redis.connection.Connection):
    """A connection class with a read_response of its own (as Sentinel's has)."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        return super().read_response(*args, **kwargs)


def _reads_for_twenty_replies(redis_target: RedisTarget, connection_class: type) -> int:
    """How many read_response calls the reader makes for 20 small replies."""
    pool = redis.ConnectionPool(
        host=redis_target.host,
        port=redis_target.port,
        db=redis_target.db,
        connection_class=connection_class,
    )
    client = redis.Redis(connection_pool=pool)
    reader = Reader(client)
    calls: list[int] = []
    try:
        reader.execute("PING")  # connected: the handshake's replies are not counted
        connection = reader._state.connection
        own = connection.read_response

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return own(*args, **kwargs)

        connection.read_response = counted  # this connection's, its class's unchanged
        replies = reader.execute_many(*[("ECHO", str(n)) for n in range(20)])
        assert replies == [str(n).encode() for n in range(20)]
    finally:
        reader.close()
        client.close()
    return len(calls)


def test_replies_that_came_together_are_taken_from_the_buffer(redis_target: RedisTarget) -> None:
    """With redis-py's own read_response, 20 small replies that arrive together take
    one read_response (a few, if the socket split them), not 20."""
    assert 1 <= _reads_for_twenty_replies(redis_target, redis.connection.Connection) < 5


def test_a_connection_class_with_its_own_read_response_reads_every_reply_through_it(
    redis_target: RedisTarget,
) -> None:
    """A connection class that overrides read_response (as Sentinel's does, turning
    READONLY into a reconnection) gets every reply through it."""
    assert _reads_for_twenty_replies(redis_target, _Overriding) == 20
