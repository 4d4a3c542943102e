"""redis+stream reads a fetched batch at once: the same messages and deliveries as
reading each entry alone gives (no server needed: these are the pure parts)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
from brokerkit import Delivery
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._message import Message
from brokerkit.backends.redis import _stream_fields
from brokerkit.backends.redis._heartbeat import LeaseKeeper
from brokerkit.backends.redis.stream.deliveries import first_deliveries
from brokerkit.backends.redis.stream.entries import StreamReceipt, decode_entry

_line = st.text(st.characters(blacklist_characters="\n"), max_size=10)
_three_lines = st.tuples(
    st.sampled_from(["0a1", "01a2354caf590bc449c11ad403e8", "", "{", "é"]) | _line,
    st.sampled_from(["bin", "json", "text", "msgpack", "a/b", "nobody", "", "{a/b"]) | _line,
    st.sampled_from(["1.5", "0", "-3", "nan", "inf", "1e999", " 7 ", "1_0", "x", "", "{"])
    | st.floats().map(repr),
).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))
_written = st.builds(
    Message,
    id=st.text("0123456789abcdef", min_size=1, max_size=28),
    topic=st.just("orders"),
    payload=st.just(b""),
    content_type=st.sampled_from(["application/json", "application/octet-stream", "a/b"]),
    headers=st.just({}) | st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=1),
    published_at=st.sampled_from([1700000000.25, 0.0]) | st.floats(0, 4e9),
).map(lambda m: _stream_fields.stream_header(m).encode())
_headers = (
    _written
    | _three_lines
    | st.binary(max_size=30)
    | st.sampled_from([b'{"id":"0a1","ct":"a/b","ts":1}\nx/y\n2', b"0a1\n\xff/x\n1", b"\n\n"])
    # a line "\0", as the batch's separator is: a header of two lines and one of four
    # with such a line must not pass for two of three
    | st.sampled_from([b"0a1\nbin\n1.5\n\0", b"bin\n1.5", b"0a1\n\0\n1", b"\0", b"0\0\nbin\n1"])
)


_with_headers = st.builds(
    Message,
    id=st.text("0123456789abcdef", min_size=1, max_size=28),
    topic=st.just("orders"),
    payload=st.just(b""),
    content_type=st.sampled_from(["application/json", "a/b"]),
    headers=st.dictionaries(st.text(max_size=3), st.text(max_size=3), min_size=1, max_size=2),
    published_at=st.sampled_from([1700000000.25, 0.0]),
).map(lambda m: _stream_fields.stream_header(m).encode())
_headers_lines = st.tuples(
    st.sampled_from(["0a1", "{", ""]),
    st.sampled_from(["json", "a/b", "nobody"]),
    st.sampled_from(["1.5", "inf"]),
    st.sampled_from(['{"a":"b"}', "{}", '{"a":1}', '{"a":"b"} ', ' {"a":"b"}', "[]"])
    | st.sampled_from(['{"a":"\\ud800"}', '{"a":"\\u00e9"}', '{"a":"b"},{"c":"d"}'])
    | st.sampled_from(['{"a":"b"', '"x"', "{", "{}\n{}"]),
).map(lambda lines: "\n".join(lines).encode())


def _one_by_one(headers: list[bytes], payloads: list[bytes]) -> list[Message | None]:
    return [
        _stream_fields.message_from_header("orders", h, p)
        for h, p in zip(headers, payloads, strict=True)
    ]


def _plain(header: bytes) -> bool:
    """Three lines, none empty or opening with "{": what the batch reads at once."""
    lines = header.split(b"\n")
    return len(lines) == 3 and all(line[:1] not in (b"", b"{") for line in lines)


@given(st.lists(_headers, max_size=6))
def test_a_batch_of_headers_reads_as_each_header_alone(headers: list[bytes]) -> None:
    payloads = [b"p%d" % n for n in range(len(headers))]
    batch = _stream_fields.messages_from_headers("orders", headers, payloads)
    alone = _one_by_one(headers, payloads)
    if batch is not None:
        assert batch == alone
        assert len({id(m.headers) for m in batch}) == len(batch)  # a dict each
    if all(map(_plain, headers)) and None not in alone:
        assert batch == alone  # the batch was read at once, not left to the caller


@given(st.lists(_with_headers | _headers_lines, max_size=5))
def test_a_batch_of_headers_with_headers_reads_as_each_header_alone(headers: list[bytes]) -> None:
    payloads = [b"p%d" % n for n in range(len(headers))]
    batch = _stream_fields.messages_from_headers("orders", headers, payloads)
    alone = _one_by_one(headers, payloads)
    if batch is not None:
        assert batch == alone
        assert len({id(m.headers) for m in batch}) == len(batch)


_tail_line = st.sampled_from(["bin", "a/b", "", "{", "\0", "1.5", "inf", "nan", " 2 "]) | _line
_shared_tail = st.tuples(_tail_line, _tail_line).map(
    lambda t: f"\n{t[0]}\n{t[1]}".encode("utf-8", "surrogatepass")
)
_id_line = st.sampled_from(["0a1", "", "{", "\0", "é", "a\nb", "x\0y"]) | _line


@given(
    st.lists(_id_line, min_size=2, max_size=6),
    _shared_tail,
    st.lists(st.tuples(st.integers(0, 5), _headers), max_size=2),
)
def test_a_batch_of_one_tail_reads_as_line_by_line(
    ids: list[str], tail: bytes, odd: list[tuple[int, bytes]]
) -> None:
    """Headers of one content type and time (what publish_many writes) have only their
    ids split out; whatever the lines, the answer is the line by line reading's, and
    that of each header alone."""
    headers = [i.encode("utf-8", "surrogatepass") + tail for i in ids]
    for at, header in odd:
        headers.insert(min(at, len(headers)), header)
    count = len(headers)
    assert _stream_fields.header_lines(headers) == _stream_fields._line_by_line(headers, count)
    payloads = [b"p"] * count
    batch = _stream_fields.messages_from_headers("orders", headers, payloads)
    assert batch is None or batch == _one_by_one(headers, payloads)


def test_a_batch_publish_many_wrote_has_only_its_ids_split_out() -> None:
    written = [Message(f"0a{n}", "orders", b"p", "application/json", {}, 1.5) for n in range(3)]
    headers = [_stream_fields.stream_header(m).encode() for m in written]
    assert _stream_fields._one_tail(headers, 3) == (
        ["0a0", "0a1", "0a2"],
        ["application/json"] * 3,
        [1.5] * 3,
        None,
    )
    assert _stream_fields.messages_from_headers("orders", headers, [b"p"] * 3) == written


def test_a_batch_with_headers_publish_many_wrote_is_read_at_once() -> None:
    written = [
        Message(f"0a{n}", "orders", b"p", "application/json", {"trace-id": f"t{n}"}, 1.5)
        for n in range(3)
    ]
    headers = [_stream_fields.stream_header(m).encode() for m in written]
    assert _stream_fields.messages_from_headers("orders", headers, [b"p"] * 3) == written


@pytest.mark.parametrize(
    "line",
    [b'{"a":"\\ud800"}', b'{"a":1}', b"[]", b'{"a":"b"},{"c":"d"}', b' {"a":"b"}', b'{"a":"b"'],
    ids=["lone surrogate", "not str", "not an object", "two objects", "space", "unclosed"],
)
def test_an_odd_headers_line_in_a_batch_is_read_alone(line: bytes) -> None:
    headers = [b'0a1\njson\n1.5\n{"a":"b"}', b"0a2\njson\n1.5\n" + line]
    batch = _stream_fields.messages_from_headers("orders", headers, [b"p"] * 2)
    alone = _one_by_one(headers, [b"p"] * 2)
    assert batch is None or batch == alone
    assert alone[1] is None or line == b' {"a":"b"}'  # json.loads skips the space


def test_a_batch_publish_many_wrote_is_read_at_once() -> None:
    written = [
        Message(f"0a{n}", "orders", b"p", ct, {}, 1700000000.5)
        for n, ct in enumerate(["application/octet-stream", "text/csv", "application/json"])
    ]
    headers = [_stream_fields.stream_header(m).encode() for m in written]
    assert _stream_fields.messages_from_headers("orders", headers, [b"p"] * 3) == written


@pytest.mark.parametrize(
    "odd",
    [b"0a9\nbin\ninf", b"\nbin\n1", b"0a9\nbin\n1\n{}", b"0a9\n{a/b\n1", b"0a9\nbin", 7],
    ids=["infinite ts", "empty id", "headers line", "brace", "two lines", "not bytes"],
)
def test_one_odd_header_leaves_the_batch_to_the_caller(odd: Any) -> None:
    headers = [b"0a1\nbin\n1.5", odd, b"0a2\nbin\n1.5"]
    assert _stream_fields.messages_from_headers("orders", headers, [b"p"] * 3) is None


def test_a_four_line_and_a_two_line_header_are_not_read_as_two_of_three() -> None:
    # Joined by the batch's separator line, these have a line "\0" where a separator
    # would be, and the separator where an id would be.
    headers = [b"0a1\nbin\n1.5\n\0", b"bin\n1.5"]
    assert _stream_fields.messages_from_headers("orders", headers, [b"p"] * 2) is None
    assert _one_by_one(headers, [b"p"] * 2) == [None, None]


def _slots(obj: object) -> dict[str, Any]:
    names = [n for cls in type(obj).__mro__ for n in getattr(cls, "__slots__", ())]
    assert names
    return {name: getattr(obj, name) for name in names}


def test_messages_without_headers_are_what_init_makes() -> None:
    made = Message._many("orders", ["a", "b"], [b"1", b"2"], ["x/y", "a/b"], [1.0, 2.5])
    expected = [Message("a", "orders", b"1", "x/y", {}, 1.0), Message("b", "orders", b"2", "a/b")]
    expected[1].published_at = 2.5
    assert [_slots(m) for m in made] == [_slots(m) for m in expected]
    assert made[0].headers is not made[1].headers


def test_messages_with_headers_are_what_init_makes() -> None:
    headers = [{"a": "1"}, {}]
    made = Message._many("orders", ["a", "b"], [b"1", b"2"], ["x/y", "a/b"], [1.0, 2.5], headers)
    expected = [
        Message("a", "orders", b"1", "x/y", headers[0], 1.0),
        Message("b", "orders", b"2", "a/b", headers[1], 2.5),
    ]
    assert [_slots(m) for m in made] == [_slots(m) for m in expected]
    assert made[0].headers is headers[0]


@pytest.mark.parametrize("cls", [Delivery, AsyncDelivery])
def test_first_attempts_are_what_init_makes(cls: Any) -> None:
    message = Message("a", "orders", b"1", "x/y")
    with brokerkit.connect("memory://") as broker, broker.subscribe("orders") as subscription:
        made = cls._first_attempts([message], subscription, ["r"])
        expected = cls(message, subscription=subscription, attempt=1, receipt="r")
        assert [_slots(d) for d in made] == [_slots(expected)]
        assert made[0].body == b"1" and not made[0].settled  # the lazy body still works


@given(st.lists(st.tuples(_headers, st.booleans()), max_size=5))
def test_first_deliveries_read_as_each_entry_alone(entries: list[tuple[bytes, bool]]) -> None:
    reply: list[Any] = [
        [b"1-%d" % n, [b"bk1", h, b"body", b"p"] if ours else [b"body", h]]
        for n, (h, ours) in enumerate(entries)
    ]
    broker = brokerkit.connect("memory://")
    with broker, broker.subscribe("orders", group="g") as subscription:
        got = first_deliveries(subscription, "k", reply, None)
        assert [d.message for d in got] == [decode_entry("orders", flat, None) for _, flat in reply]
        assert [d.receipt for d in got] == [
            StreamReceipt("k", "g", f"1-{n}", subscription.consumer) for n in range(len(got))
        ]
        assert all(type(d.receipt) is StreamReceipt and d.attempt == 1 for d in got)
        assert all(d.subscription is subscription for d in got)


def test_a_message_is_a_dataclass_of_these_fields() -> None:
    # _without_headers sets these slots by hand: a new field must be added there too.
    assert [f.name for f in dataclasses.fields(Message)] == [
        "id",
        "topic",
        "payload",
        "content_type",
        "headers",
        "published_at",
    ]


def test_the_lease_keeper_holds_deliveries_by_identity() -> None:
    # Keyed by the deliveries themselves: two deliveries of one message, with equal
    # receipts, are two leases; dropping one keeps the other.
    message = Message("a", "orders", b"1", "x/y")
    with brokerkit.connect("memory://") as broker, broker.subscribe("orders") as subscription:
        first, second, third = (
            Delivery(message, subscription=subscription, receipt="r") for _ in range(3)
        )
        keeper = LeaseKeeper(lambda held: [], interval=3600, name="test-keeper")
        try:
            keeper.hold([first, second])
            keeper.hold(d for d in [third])
            keeper.drop([first, first])
            assert keeper.held() == [second, third]
            third._mark_settled()
            assert keeper.held() == [second]
        finally:
            keeper.stop()
