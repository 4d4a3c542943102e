"""The commands a kept connection sends are packed by hiredis's packer into the very
bytes redis-py's connection would write (``brokerkit/backends/redis/_packing.py``), and
by the connection itself wherever the two could differ."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import Connection
from redis.exceptions import DataError

from brokerkit.backends.redis import _packing
from brokerkit.backends.redis._packing import pack

_ARGUMENTS = st.one_of(
    st.text(),  # lone surrogates too: both refuse them alike
    st.binary(max_size=9000),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
_COMMANDS = st.lists(
    st.tuples(
        # (redis-py splits a name of several words: "SCRIPT LOAD" goes as two arguments)
        st.sampled_from(["EVALSHA", "LMOVE", "SET", "SCRIPT LOAD", "A\tB", "", b"CLIENT LIST"]),
        st.lists(_ARGUMENTS, max_size=8),
    ),
    min_size=1,
    max_size=6,
)


def _written(packed: list[bytes]) -> bytes:
    return b"".join(packed)


@pytest.mark.parametrize("connection", [Connection(), aioredis.Connection()], ids=["sync", "async"])
@given(commands=_COMMANDS)
def test_pack_writes_what_the_connection_would(connection: Any, commands: Any) -> None:
    as_tuples = [(name, *args) for name, args in commands]
    try:
        expected = _written(connection.pack_commands(as_tuples))
    except Exception as refused:  # refused alike (a lone surrogate...)
        with pytest.raises(type(refused)):
            pack(connection, as_tuples)
        return
    packed = pack(connection, as_tuples)
    assert _written(packed) == expected
    # a run of small commands goes in one write: never two small writes in a row
    small = [len(piece) <= _packing._JOIN_UP_TO for piece in packed]
    assert not any(a and b for a, b in itertools.pairwise(small))


def test_a_run_of_small_commands_is_one_write_and_a_big_one_its_own() -> None:
    body = b"x" * 10_000
    packed = pack(Connection(), [("MULTI",), ("LPUSH", "q", body), ("EXEC",), ("PING",)])
    assert [len(p) <= _packing._JOIN_UP_TO for p in packed] == [True, False, True]


@pytest.mark.parametrize("connection", [Connection(), aioredis.Connection()], ids=["sync", "async"])
def test_with_hiredis_the_connection_does_not_pack(
    monkeypatch: pytest.MonkeyPatch, connection: Any
) -> None:
    """The default connection's commands go to hiredis's packer (redis-py's own packing
    is never called), which the speed of every fetch and ack depends on."""

    def refuse(commands: Any) -> Any:
        raise AssertionError("packed by the connection")

    monkeypatch.setattr(connection, "pack_commands", refuse)
    assert _written(pack(connection, [("SET", "k", 1), ("GET", "k")])) == (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    )


def test_without_hiredis_the_connection_packs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_packing, "_pack_command", None)
    calls: list[Any] = []
    connection = Connection()
    real = connection.pack_commands
    connection.pack_commands = lambda commands: calls.append(commands) or real(commands)  # type: ignore[method-assign]
    assert _written(pack(connection, [("SET", "k", 1)])) == _written(real([("SET", "k", 1)]))
    assert calls == [[("SET", "k", 1)]]


@pytest.mark.parametrize(
    ("connection", "text", "sent"),
    [
        (Connection(encoding="latin-1"), "é", b"\xe9"),
        (Connection(encoding_errors="replace"), "\ud800", b"?"),
    ],
    ids=["latin-1", "errors=replace"],
)
def test_another_encoding_is_packed_by_the_connection(
    connection: Connection, text: str, sent: bytes
) -> None:
    """hiredis writes text as strict UTF-8: a connection set to encode otherwise packs
    its own commands, so that what goes out is what redis-py would send."""
    written = _written(pack(connection, [("SET", "k", text)]))
    assert written == _written(connection.pack_commands([("SET", "k", text)]))
    assert written.endswith(b"\r\n" + sent + b"\r\n")


@pytest.mark.parametrize("value", [True, None, object()])
def test_what_redis_py_refuses_it_refuses_with_its_own_error(value: object) -> None:
    with pytest.raises(DataError):
        pack(Connection(), [("SET", "k", value)])


def test_a_kept_connection_sends_what_hiredis_packed(
    redis_client: redis.Redis, prefix: str
) -> None:
    """End to end, on a real server: the reader's commands arrive whole."""
    from brokerkit.backends.redis._held import Reader

    reader = Reader(redis_client)
    try:
        key = f"{prefix}:packing"  # a key of this test's own
        body = "é" * 5000
        assert reader.execute_many(("SET", key, body), ("GET", key), ("DEL", key)) == [
            b"OK",
            body.encode(),
            1,
        ]
    finally:
        reader.close()
