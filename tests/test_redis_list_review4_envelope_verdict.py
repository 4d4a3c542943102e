"""redis+list's scripts read an element as an envelope exactly when brokerkit's Python
decoder does: a nack hands a raw element back as it was, and a dead letter carries the
id the consumer saw. Against a real redis-server, through the scripts' own Lua."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit.backends.redis import _envelope as envelope
from brokerkit.backends.redis.list.preamble import with_preamble
from brokerkit.backends.redis.list.replies import unwrap
from tests.conftest import RedisTarget

#: The scripts' verdict on each element in ARGV[7...] (after the arguments every script
#: takes): 1 raw, 0 not.
IS_RAW = with_preamble(
    "local out = {}\nfor i = 7, #ARGV do out[i - 6] = is_raw(ARGV[i]) and 1 or 0 end\nreturn out\n"
)


def python_raw(element: bytes) -> bool:
    """Whether the consumer reads ``element`` as a raw one: not wrapped by a hand-back,
    and no envelope for the decoder."""
    if unwrap(element)[1] is not element:
        return False
    read = envelope.decode("t", element)
    raw = envelope.raw_message("t", element)
    return (read.id, read.payload, read.published_at) == (raw.id, raw.payload, 0.0)


#: ARGV[1...6] of every script (see .scripts): only their presence matters here.
_COMMON: list[bytes] = [b"p:processing:", b"p:leases:", b"0", b"t", b"", b"1000"]

_KEYS = [b'"id"', b'"ct"', b'"ts"', b'"h"', b'"x"', b'"\\u0069d"', b'"\\ud800"']
_VALUES = [
    # strings, some of them no JSON (raw controls), no UTF-8, or with lone surrogates
    b'"a"',
    b'""',
    b'"\\u00e9"',
    b'"\\ud800"',
    b'"\\udc00x"',
    b'"\\ud83d\\ude00"',
    b'"\x01"',
    b'"\xff"',
    b'"\xc3\xa9"',
    b'"\\x"',
    b'"\\/"',
    b'"1.5"',
    b'" 1_0 "',
    b'"1__0"',
    b'"0x10"',
    b'"inf"',
    b'"\\u0031e3"',
    b'"\\ud800"',
    # times as text (never a time: ts is a JSON number), in digits and spaces beyond ASCII
    b'"\xd9\xa1"',
    b'"\xef\xbc\x91"',
    b'"\xc2\xa01"',
    b'"1\xe3\x80\x80"',
    b'"\\u0661"',
    # numbers as JSON has them and as it does not
    b"0",
    b"-0",
    b"1.5",
    b"1e5",
    b"-1.5E-3",
    b"1e999",
    b"0x10",
    b"01",
    b"+1",
    b"1.",
    b".5",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"nan",
    b"inf",
    b"9" * 4301,
    b"9" * 4300,
    # literals and containers
    b"true",
    b"false",
    b"null",
    b"TRUE",
    b"[]",
    b"{}",
    b"[1,]",
    b"{,}",
    b'{"k":"v"}',
    b'{"k":1}',
    b'{"k":"\\ud800"}',
    b'{"k":"v",}',
    b'[{"a":[]}]',
    b"[ ]",
    b'{ "k" : "v" }',
    # nested to the bound a header may reach (the header object is one level) and past it
    *[b"[" * n + b"]" * n for n in (30, 31, 32, 990)],
    *[b'{"a":' * n + b"1" + b"}" * n for n in (30, 31, 32, 990)],
]
_SPACE = [b"", b" ", b"\t", b"\r", b"\x0c", b"\x0b", b"\xc2\xa0", b"\x1c", b"\xe3\x80\x80"]


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    """Header lines near those brokerkit writes: fields of the envelope and others,
    values as JSON has them and as it does not, spaces where JSON takes them and
    where it does not, a byte put in or taken out here and there."""
    fields = draw(st.lists(st.tuples(st.sampled_from(_KEYS), st.sampled_from(_VALUES)), max_size=5))
    if draw(st.booleans()):
        fields.insert(0, (b'"id"', b'"a"'))
    space = st.sampled_from(_SPACE)
    body = b",".join(draw(space) + k + draw(space) + b":" + draw(space) + v for k, v in fields)
    header = draw(space) + b"{" + body + draw(space) + b"}" + draw(space) + draw(space)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(header)))
        if draw(st.booleans()):
            header = header[:at] + draw(st.binary(min_size=1, max_size=2)) + header[at:]
        else:
            header = header[:at] + header[at + 1 :]
    return header.replace(b"\n", b"")


_TEXT = st.sampled_from(
    [b"", b"a", b"01a2ff", b"x y", b"\x7f", b"\x01", b"\xc3\xa9", b"\xff", b"\\"]
)
_TIME = st.sampled_from([b"0", b"-0", b"1.5", b"17e8", b"01", b"1.", b"-", b"1e999", b"9" * 400])


@st.composite
def plain_headers(draw: st.DrawFn) -> bytes:
    """Header lines in the order and form brokerkit writes (id, ct, ts, maybe h), with
    texts and times that the scripts' quick reading must tell from the others."""
    header = b'{"id":"' + draw(_TEXT) + b'","ct":"' + draw(_TEXT) + b'","ts":' + draw(_TIME)
    pairs = draw(st.lists(st.tuples(_TEXT, _TEXT), max_size=3))
    empty: bool = draw(st.booleans())
    if pairs or empty:
        header += b',"h":{' + b",".join(b'"' + k + b'":"' + v + b'"' for k, v in pairs) + b"}"
    return header + draw(st.sampled_from([b"}", b"} ", b"", b"}}", b"}x"]))


elements = st.one_of(
    st.builds(lambda h, p: b"BK1" + h + b"\n" + p, headers(), st.binary(max_size=8)),
    st.builds(lambda h, p: b"BK1" + h + b"\n" + p, plain_headers(), st.binary(max_size=8)),
    st.binary(max_size=40),
    st.builds(lambda b: b"BK1" + b, st.binary(max_size=40)),
    st.builds(
        lambda n, e: b"BKR" + n + b"\n" + e,
        st.sampled_from([b"1", b"", b"x"]),
        st.binary(max_size=8),
    ),
)


@pytest.fixture(scope="module")
def verdict(redis_target: RedisTarget) -> Iterator[Callable[[list[bytes]], list[bool]]]:
    client = redis_target.client()
    script = client.register_script(IS_RAW)
    yield lambda batch: [bool(v) for v in script(keys=[], args=[*_COMMON, *batch])]
    client.close()


#: Elements the final review found read one way by the decoder and another by the
#: scripts: a time as text in digits or spaces beyond ASCII (Python's float() read them),
#: JSON nested about as deep as the reader's stack allowed.
_REVIEWED = [
    b'BK1{"id":"x","ts":"\xd9\xa1"}\nP',
    b'BK1{"id":"x","ts":"\xef\xbc\x91"}\nP',
    b'BK1{"id":"x","ts":"\xc2\xa01"}\nP',
    b'BK1{"id":"x","ts":"1\xe3\x80\x80"}\nP',
    b'BK1{"id":"x","ts":"\\u0661"}\nP',
    b'BK1{"id":"x","ts":"1"}\nP',
    b'BK1{"id":"x","ts":true}\nP',
    *[b'BK1{"id":"x","a":' + b"[" * n + b"]" * n + b"}\nP" for n in (30, 31, 32, 990, 995, 999)],
    *[b'BK1{"id":"x","h":{"a":"b"},"a":' + b'{"b":' * n + b"1" + b"}" * n + b"}\nP"
      for n in (30, 31, 950)],
]  # fmt: skip


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(elements, min_size=1, max_size=40))
@example(
    [
        b'BK1 {"id":"a"}\nbody-ws',
        b'BK1{"id":"a","ts":0x10}\nbody-hex',
        b'BK1{"id":"\xff"}\nbody-utf8',
        b'BK1{"id":"a","x":"\\ud800"}\n',
        b'BK1{"id":"a","ts":"1_0"}\n',
        b'BK1{"id":"a"}\xc2\xa0\n',
    ]
)
@example(_REVIEWED)
def test_the_scripts_read_an_envelope_where_the_decoder_does(
    verdict: Callable[[list[bytes]], list[bool]], batch: list[bytes]
) -> None:
    assert verdict(batch) == [python_raw(e) for e in batch], [(e, python_raw(e)) for e in batch]


@pytest.mark.parametrize(
    "element",
    [
        b'BK1 {"id":"a"}\nbody-ws',
        b'BK1{"id":"a","ts":0x10}\nbody-hex',
        b'BK1{"id":"\xff"}\nbody',
        b'BK1{"id":"order-1","ts":"\xd9\xa1"}\nbody-text-ts',
        b'BK1{"id":"order-1","a":' + b"[" * 990 + b"]" * 990 + b"}\nbody-deep",
    ],
)
def test_an_element_the_decoder_reads_as_raw_is_raw_to_a_nack_and_a_dead_letter(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str, element: bytes
) -> None:
    with brokerkit.connect(redis_target.url("redis+list"), prefix=prefix) as broker:
        queue = broker._topic("orders").keys.queue  # type: ignore[attr-defined]
        redis_client.lpush(queue, element)
        raw_id = "raw-" + hashlib.sha1(element).hexdigest()[:24]
        with broker.subscribe("orders") as subscription:
            delivery = subscription.receive(timeout=5)
            assert delivery is not None and delivery.id == raw_id
            delivery.nack()
            assert redis_client.lindex(queue, -1) == element  # back as it was
            again = subscription.receive(timeout=5)
            assert again is not None and (again.id, again.attempt) == (raw_id, 2)
            again.nack(requeue=False)
        (dead,) = broker.consume("orders.dlq", timeout=0, limit=1)
        assert (dead.id, dead.message.payload) == (raw_id, element)
        assert dead.message.headers["x-deliveries"] == "2"
        dead.ack()
