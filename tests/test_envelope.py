"""The Redis envelope: what brokerkit writes comes back intact, and anything another
program wrote decodes as a raw message instead of raising."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from brokerkit._message import Message
from brokerkit.backends.redis import _envelope, _stream_fields

text = st.text(st.characters(blacklist_categories=("Cs",)))
messages = st.builds(
    Message,
    id=st.text("0123456789abcdef", min_size=1, max_size=28),
    topic=st.just("orders"),
    payload=st.binary(),
    content_type=st.sampled_from(
        ["application/json", "text/plain; charset=utf-8", "application/octet-stream", 'x/y; q="1"']
    ),
    headers=st.dictionaries(text, text, max_size=4),
    published_at=st.floats(min_value=0, max_value=4e9),
)


@given(messages)
def test_an_envelope_round_trips(message: Message) -> None:
    assert _envelope.decode("orders", _envelope.encode(message)) == message


@given(messages)
def test_stream_fields_round_trip(message: Message) -> None:
    fields = {
        k.encode(): v.encode() if isinstance(v, str) else v
        for k, v in _stream_fields.encode_fields(message).items()
    }
    assert _stream_fields.decode_fields("orders", fields) == message


@given(st.binary())
def test_any_value_decodes_without_raising(data: bytes) -> None:
    message = _envelope.decode("orders", b"BK1" + data)
    assert message.topic == "orders"
    assert message.id


@given(
    st.dictionaries(
        st.sampled_from([b"id", b"ct", b"ts", b"h", b"body", b"bk1", b"x"]), st.binary()
    )
)
def test_any_stream_fields_decode_without_raising(fields: dict[bytes, bytes]) -> None:
    assert _stream_fields.decode_fields("orders", fields).id


@pytest.mark.parametrize(
    "data", [b'BK1{"id":"x","ts":"abc"}\nhello', b'BK1{"id":"x"} junk\nhello', b"BK1{\nhello"]
)
def test_a_malformed_header_is_a_raw_message_with_the_lua_id(data: bytes) -> None:
    message = _envelope.decode("orders", data)
    assert message.id == "raw-" + hashlib.sha1(data).hexdigest()[:24]
    assert message.payload == data


# -- hostile values: decoding is total ---------------------------------------------------

_DEEP = 100_000  # far past Python's recursion limit and cjson's depth limit
_HOSTILE_VALUES = {
    "deeply nested header": b'BK1{"id":"x","z":' + b"[" * _DEEP + b"]" * _DEEP + b"}\nbody",
    "deeply nested headers": b'BK1{"id":"x","h":' + b'{"a":' * _DEEP + b"1" + b"}" * _DEEP
    + b"}\nbody",
    "unclosed nesting": b'BK1{"id":"x","h":' + b"[" * _DEEP + b"\nbody",
    "ts too large for a float": b'BK1{"id":"x","ts":1' + b"0" * 400 + b"}\nbody",
    "ts infinite": b'BK1{"id":"x","ts":1e999}\nbody',
    "ts NaN": b'BK1{"id":"x","ts":NaN}\nbody',
    "ts Infinity": b'BK1{"id":"x","ts":-Infinity}\nbody',
    "header not UTF-8": b'BK1{"id":"\xff\xfe"}\nbody',
    "lone surrogate in a header": b'BK1{"id":"x","h":{"k":"\\ud800"}}\nbody',
    "lone surrogate in the id": b'BK1{"id":"\\udfff"}\nbody',
    "id not a string": b'BK1{"id":12}\nbody',
    "headers not strings": b'BK1{"id":"x","h":{"k":[1]}}\nbody',
    "a raw deeply nested JSON value": b"[" * _DEEP + b"]" * _DEEP,
    "a raw huge number": b"1" + b"0" * 5000,
    "raw invalid UTF-8": b"\xc3\x28\xa0\xa1",
}  # fmt: skip


@pytest.mark.parametrize("data", _HOSTILE_VALUES.values(), ids=_HOSTILE_VALUES.keys())
def test_a_hostile_value_is_a_raw_message_that_re_encodes(data: bytes) -> None:
    message = _envelope.decode("orders", data)
    assert message.id == "raw-" + hashlib.sha1(data).hexdigest()[:24]
    assert message.payload == data
    assert message.content_type in {
        "application/json",
        "text/plain; charset=utf-8",
        "application/octet-stream",
    }
    # a raw message can be dead-lettered: it encodes, and that decodes to itself
    assert _envelope.decode("orders", _envelope.encode(message)) == message


def test_a_raw_value_json_cannot_read_is_text_not_json() -> None:
    message = _envelope.decode("orders", _HOSTILE_VALUES["a raw deeply nested JSON value"])
    assert message.content_type == "text/plain; charset=utf-8"
    assert isinstance(message.body, str)


_HOSTILE_HEADERS = {
    "nested JSON header": b'{"id":"x","ct":"a/b","ts":1,"z":' + b"[" * _DEEP + b"]" * _DEEP + b"}",
    "nested headers line": b"x\njson\n1.5\n" + b"[" * _DEEP + b"]" * _DEEP,
    "ts too large (JSON)": b'{"id":"x","ct":"a/b","ts":1' + b"0" * 400 + b"}",
    "ts infinite (lines)": b"x\njson\n1e999",
    "ts NaN (lines)": b"x\njson\nnan",
    "surrogate in headers line": b'x\njson\n1.5\n{"k":"\\udc80"}',
    "not UTF-8": b"\xff\njson\n1.5",
}  # fmt: skip


@pytest.mark.parametrize("header", _HOSTILE_HEADERS.values(), ids=_HOSTILE_HEADERS.keys())
def test_a_hostile_stream_header_is_a_raw_entry(header: bytes) -> None:
    assert _stream_fields.message_from_header("orders", header, b"body") is None
    message = _stream_fields.decode_fields("orders", {b"bk1": header, b"body": b"body"})
    assert message.id.startswith("raw-")
    assert _envelope.decode("orders", _envelope.encode(message)) == message


@pytest.mark.parametrize(
    "fields",
    [
        {b"id": b"x", b"ct": b"a/b", b"ts": b"1e999", b"body": b"p"},
        {b"id": b"x", b"ct": b"a/b", b"h": b"[" * _DEEP + b"]" * _DEEP, b"body": b"p"},
        {b"id": b"x", b"ct": b"a/b", b"h": b'{"k":"\\ud800"}', b"body": b"p"},
        {b"id": b"\xff", b"ct": b"a/b", b"body": b"p"},
    ],
    ids=["ts infinite", "nested headers", "surrogate", "id not UTF-8"],
)
def test_hostile_old_style_fields_are_a_raw_entry(fields: dict[bytes, bytes]) -> None:
    message = _stream_fields.decode_fields("orders", fields)
    assert message.id.startswith("raw-")
    assert _envelope.decode("orders", _envelope.encode(message)) == message


_json_ish = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["\ud800", "\udfff", "x\udc80y"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.mark.parametrize("message_id", ["\x1f", 'a"b', "a\\b", "line\nbreak", "é", "\ud800"])
def test_an_id_another_program_wrote_survives_re_encoding(message_id: str) -> None:
    """brokerkit's own ids need no escaping; one read from a foreign header is escaped."""
    text = json.dumps({"id": message_id, "ct": "text/plain"})
    message = _envelope.decode("orders", b"BK1" + text.encode() + b"\nx")
    if "\ud800" in message_id:
        assert message.id.startswith("raw-")  # a lone surrogate cannot be re-encoded
        return
    assert message.id == message_id
    assert _envelope.decode("orders", _envelope.encode(message)) == message


@given(
    st.dictionaries(st.sampled_from(["id", "ct", "ts", "h", "x"]), _json_ish, max_size=5),
    st.binary(max_size=8),
)
def test_any_json_header_decodes_to_a_message_that_re_encodes(
    header: dict[str, object], payload: bytes
) -> None:
    text = json.dumps(header, ensure_ascii=True)  # \\u escapes carry the surrogates
    data = b"BK1" + text.encode() + b"\n" + payload
    message = _envelope.decode("orders", data)
    assert _envelope.decode("orders", _envelope.encode(message)) == message
    fields = {b"bk1": text.encode(), b"body": payload}
    message = _stream_fields.decode_fields("orders", fields)
    again = _stream_fields.encode_fields(message)
    assert again["body"] == message.payload


@given(st.binary(), st.binary())
def test_any_stream_header_bytes_decode(header: bytes, payload: bytes) -> None:
    message = _stream_fields.decode_fields("orders", {b"bk1": header, b"body": payload})
    assert _envelope.decode("orders", _envelope.encode(message)) == message


# -- through the real backends: a hostile value never jams a topic ------------------------

_THROUGH_BACKENDS = [
    "deeply nested header",
    "ts too large for a float",
    "lone surrogate in a header",
]


#: The stream header (field bk1) of each hostile case, in a form that has every field
#: a brokerkit header has, so that only the hostile part makes it raw.
_STREAM_HEADERS = {
    "deeply nested header": _HOSTILE_HEADERS["nested JSON header"],
    "ts too large for a float": _HOSTILE_HEADERS["ts too large (JSON)"],
    "lone surrogate in a header": _HOSTILE_HEADERS["surrogate in headers line"],
}


@pytest.mark.parametrize(
    ("scheme", "name"),
    [
        *[("redis+stream", name) for name in _THROUGH_BACKENDS],
        ("redis+list", "deeply nested header"),
        ("redis+list", "lone surrogate in a header"),
        pytest.param("redis+list", "ts too large for a float"),
    ],
)
def test_a_hostile_value_is_delivered_dead_lettered_and_jams_nothing(
    redis_broker: Callable[..., Any], redis_client: redis.Redis, scheme: str, name: str
) -> None:
    data = _HOSTILE_VALUES[name]
    broker = redis_broker(scheme)
    if scheme == "redis+list":
        redis_client.lpush(broker.inspect("orders").details["queue_key"], data)
    else:
        broker.publish("orders", "first")  # creates the stream and the group's start
        subscription = broker.subscribe("orders")
        first = subscription.receive(timeout=5)
        assert first is not None
        first.ack()
        redis_client.xadd(broker.stream_key("orders"), {"bk1": _STREAM_HEADERS[name], "body": b"b"})
    good = broker.publish("orders", "good")
    subscription = broker.subscribe("orders", prefetch=2)
    poison = subscription.receive(timeout=5)
    assert poison is not None and poison.id.startswith("raw-")
    poison.nack(requeue=False)
    behind = subscription.receive(timeout=5)
    assert behind is not None and (behind.id, behind.body) == (good, "good")
    behind.ack()
    dead = broker.subscribe(broker.dead_letter_topic("orders")).receive(timeout=5)
    assert dead is not None and dead.payload == poison.payload
    assert dead.headers["x-dead-letter-reason"] == "rejected"
    dead.ack()


def test_a_hostile_value_on_a_channel_is_delivered_and_jams_nothing(
    redis_broker: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = redis_broker("redis+pubsub")
    subscription = broker.subscribe("chat")
    channel = broker.channel("chat")
    deadline = time.monotonic() + 10
    while redis_client.pubsub_numsub(channel)[0][1] < 1:  # the subscription is listening
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for name in _THROUGH_BACKENDS:
        redis_client.publish(channel, _HOSTILE_VALUES[name])
    good = broker.publish("chat", "good")
    received = [subscription.receive(timeout=5) for _ in range(len(_THROUGH_BACKENDS) + 1)]
    assert all(d is not None for d in received)
    assert [d.payload for d in received[:-1] if d] == [
        _HOSTILE_VALUES[n] for n in _THROUGH_BACKENDS
    ]
    assert received[-1] is not None and (received[-1].id, received[-1].body) == (good, "good")


@pytest.mark.parametrize("name", _THROUGH_BACKENDS)
def test_the_stream_reaper_dead_letters_a_hostile_entry_past_max_deliveries(
    redis_broker: Callable[..., Any], redis_client: redis.Redis, name: str
) -> None:
    broker = redis_broker("redis+stream", max_deliveries=1, visibility_timeout=0.3)
    subscription = broker.subscribe("orders")
    redis_client.xadd(broker.stream_key("orders"), {"bk1": _STREAM_HEADERS[name], "body": b"b"})
    poison = subscription.receive(timeout=5)
    assert poison is not None and poison.id.startswith("raw-")
    broker._suspend_renewals()  # a consumer that hangs on it: its only lease runs out
    dead = broker.subscribe(broker.dead_letter_topic("orders")).receive(timeout=10)
    assert dead is not None
    assert (dead.id, dead.payload) == (poison.id, poison.payload)
    assert dead.headers["x-dead-letter-reason"] == "max_deliveries"
    dead.ack()
    good = broker.publish("orders", "good")
    behind = subscription.receive(timeout=5)
    assert behind is not None and (behind.id, behind.body) == (good, "good")


# -- the three-line stream header (no headers): its shortcut checks what the rest checks --


def _three_lines_as_the_general_checks_read_them(header: bytes) -> Message | None:
    """What message_from_header gave for a three-line header before it had a shortcut:
    the general checks (_well_formed, _utf8) applied to the split lines."""
    try:
        text = header.decode()
        message_id, short, ts = text.split("\n")
        published_at = float(ts)
    except Exception:
        return None
    content_type = _stream_fields._CONTENT_TYPES.get(short, short)
    if "/" not in content_type:
        return None
    if not _envelope._well_formed(message_id, content_type, {}, published_at):
        return None
    if not _envelope._utf8(text, message_id, content_type, {}):
        return None
    return Message(message_id, "orders", b"p", content_type, {}, published_at)


_line = st.text(st.characters(blacklist_characters="\n"), max_size=12)
_three_lines = st.tuples(
    _line | st.just(""),
    st.sampled_from(["bin", "json", "text", "msgpack", "a/b", "nobody", "", "x/y; q=1"]) | _line,
    st.sampled_from(["1.5", "0", "-3", "nan", "inf", "1e999", " 7 ", "1_0", "x", ""])
    | st.floats().map(repr),
).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))


@given(_three_lines | st.binary(max_size=40))
def test_a_three_line_header_decodes_as_the_general_checks_say(header: bytes) -> None:
    if header.count(b"\n") != 2 or header.startswith(b"{"):
        return
    assert _stream_fields.message_from_header(
        "orders", header, b"p"
    ) == _three_lines_as_the_general_checks_read_them(header)


@pytest.mark.parametrize(
    ("header", "content_type"),
    [
        (b"0a1\nbin\n1.5", "application/octet-stream"),
        (b"0a1\njson\n1.5", "application/json"),
        (b"0a1\ntext\n1.5", "text/plain; charset=utf-8"),
        (b"0a1\nmsgpack\n1.5", "application/msgpack"),
        (b"0a1\ntext/csv\n1.5", "text/csv"),
    ],
)
def test_a_three_line_header_names_its_content_type(header: bytes, content_type: str) -> None:
    message = _stream_fields.message_from_header("orders", header, b"p")
    assert message == Message("0a1", "orders", b"p", content_type, {}, 1.5)


@pytest.mark.parametrize(
    "header",
    [b"\nbin\n1.5", b"0a1\nnoslash\n1.5", b"0a1\nbin\ninf", b"0a1\nbin\nnan", b"0a1\nbin\nx"],
    ids=["empty id", "content type without a slash", "infinite ts", "NaN ts", "ts not a number"],
)
def test_a_three_line_header_that_is_not_ours_is_none(header: bytes) -> None:
    assert _stream_fields.message_from_header("orders", header, b"p") is None


def test_a_json_header_on_three_lines_is_read_as_json() -> None:
    header = b'{"id":"0a1",\n"ct":"a/b",\n"ts":2.5}'
    message = _stream_fields.message_from_header("orders", header, b"p")
    assert message == Message("0a1", "orders", b"p", "a/b", {}, 2.5)


# -- the plain envelope header (hex id, no headers): read without the JSON decoder, as it --


def _decoded_generally(data: bytes) -> Message:
    """What decode gave before it had a shortcut for plain headers."""
    end = data.find(b"\n", len(_envelope.MAGIC))
    if data.startswith(_envelope.MAGIC) and end != -1:
        header, payload = data[len(_envelope.MAGIC) : end], data[end + 1 :]
        message = _envelope._from_json_header("orders", header, payload)
        if message is not None:
            return message
    return _envelope.raw_message("orders", data)


_plain_headers = st.builds(
    lambda message_id, content_type, ts, payload: (
        b'BK1{"id":"' + message_id + b'","ct":"' + content_type + b'","ts":' + ts + b"}\n" + payload
    ),
    st.sampled_from([b"0a1", b"01a2354caf590bc449c11ad403e8", b"", b"0A1", b"g"]),
    st.binary(max_size=8)
    | st.sampled_from([b"application/json", b"text/plain; charset=utf-8", b"\xc3\xa9/x"]),
    st.sampled_from([b"1.5", b"0", b"-0", b"-3", b"1e999", b"01", b"1.", b".5", b"1E+2", b"NaN"])
    | st.floats().map(lambda f: repr(f).encode()),
    st.binary(max_size=8),
)


def _plain(message_id: bytes = b"0a1", content_type: bytes = b"a/b", ts: bytes = b"1.5") -> bytes:
    return b'BK1{"id":"' + message_id + b'","ct":"' + content_type + b'","ts":' + ts + b"}\nbody"


_PLAIN_EDGES = {
    **{f"ts {ts.decode()}": _plain(ts=ts) for ts in [b"1e999", b"-1e999", b"01", b"1.", b".5"]},
    **{f"ts {ts.decode()}": _plain(ts=ts) for ts in [b"-0", b"1E+2", b"NaN", b"Infinity"]},
    **{f"ct {ct!r}": _plain(content_type=ct) for ct in [b"a\x01b", b"a\\nb", b"\xff/x"]},
    **{f"ct {ct!r}": _plain(content_type=ct) for ct in [b"\xc3\xa9/x", b"", b"a\x7fb"]},
    **{f"id {i!r}": _plain(message_id=i) for i in [b"", b"0A1", b"0a1\\u0041"]},
}


@pytest.mark.parametrize("data", _PLAIN_EDGES.values(), ids=_PLAIN_EDGES.keys())
def test_a_plain_envelope_header_at_the_edges_decodes_as_the_json_decoder_reads_it(
    data: bytes,
) -> None:
    assert _envelope.decode("orders", data) == _decoded_generally(data)


@given(_plain_headers)
def test_a_plain_envelope_header_decodes_as_the_json_decoder_reads_it(data: bytes) -> None:
    assert _envelope.decode("orders", data) == _decoded_generally(data)


def test_a_plain_envelope_header_is_read_without_the_json_decoder() -> None:
    data = b'BK1{"id":"0a1","ct":"a/b","ts":2.5}\nbody\nwith lines'
    assert _envelope._PLAIN_HEADER.match(data)
    expected = Message("0a1", "orders", b"body\nwith lines", "a/b", {}, 2.5)
    assert _envelope.decode("orders", data) == expected


# -- the decoders' shortcuts: each message as Message(...) makes it, each with its time --


def _slots(message: Message) -> dict[str, Any]:
    return {name: getattr(message, name) for name in Message.__slots__}


_READS: dict[str, Callable[[], Message | None]] = {
    "decode": lambda: _envelope.decode("orders", b'BK1{"id":"0a1","ct":"a/b","ts":2.5}\nbody'),
    "message_from_header": lambda: _stream_fields.message_from_header(
        "orders", b"0a1\na/b\n2.5", b"body"
    ),
}


@pytest.mark.parametrize("read", _READS.values(), ids=_READS.keys())
def test_a_shortcut_message_is_what_init_makes(read: Callable[[], Message | None]) -> None:
    made, again = read(), read()
    assert type(made) is Message and type(again) is Message
    assert _slots(made) == _slots(Message("0a1", "orders", b"body", "a/b", {}, 2.5))
    assert made.headers is not again.headers  # an empty dict each


_TIMES = ["1.5", "1.5", "-0", "0", "0", "2.5e3", "1.5", "-0.0", "1e999", "1.5", "1e999"]


def test_each_envelope_decodes_to_its_own_time() -> None:
    # decode keeps the time text it converted last: a repeat, a change, back again,
    # the signed zeros (equal floats) and a time too large are each read anew.
    for ts in _TIMES:
        message = _envelope.decode("orders", _plain(ts=ts.encode()))
        expected = _decoded_generally(_plain(ts=ts.encode()))
        assert _slots(message) == _slots(expected)
        assert math.copysign(1, message.published_at) == math.copysign(1, float(ts))


def test_each_stream_header_decodes_to_its_own_time() -> None:
    for ts in _TIMES:
        header = f"0a1\nbin\n{ts}".encode()
        message = _stream_fields.message_from_header("orders", header, b"p")
        assert message == _three_lines_as_the_general_checks_read_them(header)
        if message is not None:
            assert math.copysign(1, message.published_at) == math.copysign(1, float(ts))


def test_threads_decoding_different_times_each_get_their_own() -> None:
    # The time kept by decode is one (text, value) pair replaced whole: a thread never
    # reads another thread's value for its own text.
    def decode_own(ts: str) -> set[float]:
        envelope, header = _plain(ts=ts.encode()), f"0a1\nbin\n{ts}".encode()
        seen = set()
        for _ in range(3000):
            seen.add(_envelope.decode("orders", envelope).published_at)
            message = _stream_fields.message_from_header("orders", header, b"p")
            assert message is not None
            seen.add(message.published_at)
        return seen

    times = [f"{n}.5" for n in range(4)]
    with concurrent.futures.ThreadPoolExecutor(len(times)) as pool:
        results = list(pool.map(decode_own, times))
    assert results == [{float(ts)} for ts in times]


@given(_three_lines | st.binary(max_size=40) | st.sampled_from([b'{"id":"0a1","ct":"a/b"}']))
def test_a_batch_of_one_header_reads_as_that_header_alone(header: bytes) -> None:
    alone = _stream_fields.message_from_header("orders", header, b"p")
    batch = _stream_fields.messages_from_headers("orders", [header], [b"p"])
    assert batch == (None if alone is None else [alone])


def test_a_batch_of_one_json_header_is_read_at_once() -> None:
    header = b'{"id":"0a1","ct":"a/b","ts":2.5,"h":{"k":"v"}}'
    assert _stream_fields.messages_from_headers("orders", [header], [b"p"]) == [
        Message("0a1", "orders", b"p", "a/b", {"k": "v"}, 2.5)
    ]


@pytest.mark.parametrize(
    "headers",
    [
        [b"0a1\nbin", b"\0\n0a2\nbin\n1.5"],  # a separator where a time would be
        [b"0a1\nbin\n1.5\n\0\n0a2", b"1.5"],  # ... where a content type would be
        [b"0a1\nbin\n1.5\n\0", b"bin\n1.5"],  # ... where an id would be
        [b"0a1\njson\n1.5", b"\0\n0a2\njson\n1.5\n{}"],  # ... where a headers line would be
    ],
)
def test_a_batch_with_a_line_like_its_separator_reads_as_each_header_alone(
    headers: list[bytes],
) -> None:
    payloads = [b"p"] * len(headers)
    batch = _stream_fields.messages_from_headers("orders", headers, payloads)
    alone = [_stream_fields.message_from_header("orders", h, b"p") for h in headers]
    assert batch is None or batch == alone


# -- an envelope header with headers: the object read by the JSON scanner alone, as the --
# -- decoder reads the whole header --

_any_text = st.text(st.characters(codec="utf-8"), max_size=4) | st.text(max_size=4)
_headers_objects = st.one_of(
    st.dictionaries(_any_text, _any_text, max_size=3).flatmap(
        lambda h: st.sampled_from(
            [
                json.dumps(h, ensure_ascii=False, separators=(",", ":")),
                json.dumps(h),  # \u escapes and spaces
                json.dumps(h, ensure_ascii=False, separators=(",", ":")) + " ",
            ]
        )
    ),
    st.sampled_from(
        [
            "{}",
            "null",
            "[]",
            '"x"',
            '{"a":1}',
            '{"a":"b"',
            '{"a":"b"}}',
            '{"a":"b"},"id":"c"',
            '{"a":"b","a":"c"}',
            '{"a":{"b":"c"}}',
            '{"a":"\\ud800"}',
            '{"a":"\\\\u"}',
            '{"a":"b\tc"}',
            '{"a":\n"b"}',
            "[" * 5000,
        ]
    ),
    st.text(max_size=12),
)
_envelopes_with_headers = st.builds(
    lambda message_id, content_type, ts, headers, payload: (
        b'BK1{"id":"'
        + message_id
        + b'","ct":"'
        + content_type
        + b'","ts":'
        + ts
        + b',"h":'
        + headers.encode("utf-8", "surrogatepass")
        + b"}\n"
        + payload
    ),
    st.sampled_from([b"0a1", b"01a2354caf590bc449c11ad403e8"]),
    st.sampled_from([b"application/json", b"a/b", b"\xff/x"]),
    st.sampled_from([b"1.5", b"0", b"1e999"]),
    _headers_objects,
    st.binary(max_size=8) | st.just(b"x\ny"),
)


@given(_envelopes_with_headers)
def test_an_envelope_header_with_headers_decodes_as_the_json_decoder_reads_it(data: bytes) -> None:
    decoded = _envelope.decode("orders", data)
    assert _slots(decoded) == _slots(_decoded_generally(data))


@pytest.mark.parametrize(
    "headers",
    [{"trace-id": "abc"}, {"é": "ü", "k": ""}, {}, {"a": "b", "c": 'say "hi"\\'}],
)
def test_an_envelope_with_headers_is_read_without_the_json_decoder(
    headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    message = Message("01a2354caf590bc449c11ad403e8", "orders", b"p\nq", "a/b", headers, 2.5)
    data = _envelope.encode(message)
    monkeypatch.setattr(_envelope, "_from_json_header", None)  # not called
    assert _slots(_envelope.decode("orders", data)) == _slots(message)


# -- decode_many: the values of one publish_many, read as decode reads each --

_ids = st.text("0123456789abcdef", min_size=6, max_size=6) | st.sampled_from(
    ["0A1b2c", "0a\\", '0a"', "0a\u00e9", "0a1b", "g01abc"]
)
#: What encode writes for one publish_many: one content type, time and headers.
_one_batch = st.builds(
    lambda ids, payloads, content_type, ts, headers: [
        _envelope.encode(Message(i, "orders", p, content_type, headers, ts))
        for i, p in zip(ids, payloads, strict=False)
    ],
    st.lists(_ids, min_size=1, max_size=6),
    st.lists(st.binary(max_size=6), min_size=6, max_size=6),
    st.sampled_from(["application/json", "a/b", "\u00e9/x", 'x/"y"']),
    st.sampled_from([1.5, -0.0, 0.0, 2.5e3]),
    st.sampled_from([{}, {"k": "v"}, {"k": "a\x01b"}, {"k": "a\nb"}]),
)
#: Headers of one shape with ids of one length, any of them hostile: each must be read
#: as decode reads it, whatever the value before it was.
#: What may follow the time, per value (headers, or not; a key again after them: JSON
#: keeps the last one, which the plain path cannot read).
_after_time = st.sampled_from(
    [
        b"}\n",
        b',"h":{"k":"v"}}\n',
        b',"h":{"k":"\\u0041"}}\n',
        b',"h":{"k":1}}\n',
        b',"h":{"k":"v"},"ct":"y"}\n',
        b',"h":{},"ts":5}\n',
    ]
)
_one_shape = st.builds(
    lambda values, content_type, ts, payload: [
        start + i + b'","ct":"' + content_type + b'","ts":' + ts + more + payload
        for start, i, more in values
    ],
    st.lists(
        st.tuples(
            st.sampled_from([b'BK1{"id":"', b'BK1{"id":"', b'BK2{"id":"', b'BK1{"ID":"']),
            st.text("0123456789abcdef", min_size=6, max_size=6).map(str.encode)
            | st.sampled_from([b"\\u0041", b'0a"b"c', b"0A1B2C", b"0a\nbc"])
            | st.binary(min_size=6, max_size=6),
            _after_time,
        ),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from([b"a/b", b"a/b", b"", b"\xff/x", b"a\x01b"]),
    st.sampled_from([b"1.5", b"1.5", b"-0", b"1e999", b"NaN"]),
    st.binary(max_size=3),
)


@settings(max_examples=500)
@given(
    st.lists(
        _one_batch
        | _one_shape
        | st.lists(_plain_headers | st.binary(max_size=40), max_size=3)
        | st.lists(st.sampled_from(list(_PLAIN_EDGES.values())), max_size=3),
        max_size=4,
    ).map(lambda parts: [value for part in parts for value in part])
)
def test_decode_many_reads_each_value_as_decode_does(values: list[bytes]) -> None:
    many = _envelope.decode_many("orders", values, "x/raw")
    one = [_envelope.decode("orders", value, "x/raw") for value in values]
    assert [_slots(m) for m in many] == [_slots(m) for m in one]
    for message in many:
        assert type(message) is Message
        assert math.isfinite(message.published_at)
    assert len({id(m.headers) for m in many}) == len(many)  # a dict each


_REPEATED_KEYS = {
    "content type again": [
        b'BK1{"id":"aa","ct":"x","ts":1.0,"h":{"k":"v"},"ct":"y"}\npayload',
        b'BK1{"id":"bb","ct":"x","ts":1.0,"h":{"k":"v"}}\npayload',
    ],
    "time again": [
        b'BK1{"id":"aa","ct":"x","ts":1.0,"h":{},"ts":5}\npayload',
        b'BK1{"id":"bb","ct":"x","ts":1.0,"h":{}}\npayload',
    ],
}


@pytest.mark.parametrize("values", _REPEATED_KEYS.values(), ids=_REPEATED_KEYS.keys())
def test_decode_many_never_reads_a_header_after_one_json_read_otherwise(
    values: list[bytes],
) -> None:
    # JSON keeps a key's last value, the plain path its first: the first value is read
    # by the general path, and the next is not read as if it had been read as that one.
    many = _envelope.decode_many("orders", values)
    assert [_slots(m) for m in many] == [_slots(_envelope.decode("orders", v)) for v in values]


class _CountingPattern:
    def __init__(self, pattern: Any) -> None:
        self.pattern, self.read = pattern, 0

    def match(self, data: bytes) -> Any:
        self.read += 1
        return self.pattern.match(data)


def test_decode_many_reads_one_header_of_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [
        _envelope.encode(Message(f"{i:03x}", "orders", b"p%d" % i, "a/b", {}, 1.5))
        for i in range(50)
    ]
    counting = _CountingPattern(_envelope._PLAIN_HEADER)
    monkeypatch.setattr(_envelope, "_PLAIN_HEADER", counting)
    messages = _envelope.decode_many("orders", values)
    assert [m.payload for m in messages] == [b"p%d" % i for i in range(50)]
    assert counting.read == 1  # the first value's header, no other


@pytest.mark.parametrize(
    ("ts", "depth", "read"),
    [
        ("1.5", 1, True),
        ("15", 1, True),
        ('"1.5"', 1, False),  # text: not a JSON number
        ('"\u0661"', 1, False),  # digits float() reads beyond ASCII
        ("true", 1, False),
        ("1.5", _envelope.MAX_HEADER_DEPTH - 1, True),
        ("1.5", _envelope.MAX_HEADER_DEPTH, False),  # the header object is one level more
    ],
)
def test_a_stream_json_header_follows_the_envelopes_rules(ts: str, depth: int, read: bool) -> None:
    """A stream entry's ``{...}`` header field is read by the rules of the envelope's
    JSON header (docs/wire-format.md): ``ts`` a JSON number, nesting bounded."""
    extra = "[" * depth + "]" * depth
    header = f'{{"id":"a1","ct":"text/plain","ts":{ts},"x":{extra}}}'.encode()
    message = _stream_fields.message_from_header("orders", header, b"p")
    assert (message is not None) is read
    assert (_envelope.decode("orders", b"BK1" + header + b"\np").id == "a1") is read
