"""An envelope's time is a JSON number, and its header nests at most
``MAX_HEADER_DEPTH`` levels: anything else is a raw value, to every reader alike and
whatever the reader's stack allows (docs/wire-format.md)."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from brokerkit.backends.redis import _envelope


def _is_raw(data: bytes) -> bool:
    return _envelope.decode("t", data).id == "raw-" + hashlib.sha1(data).hexdigest()[:24]


@pytest.mark.parametrize(
    "ts",
    [b'"1.5"', b'"\xd9\xa1"', b'"\xef\xbc\x91"', b'"\xc2\xa01"', b'"\\u0661"', b"true", b"null"],
)
def test_a_time_that_is_no_json_number_makes_the_value_raw(ts: bytes) -> None:
    assert _is_raw(b'BK1{"id":"x","ts":' + ts + b"}\nP")


@pytest.mark.parametrize("ts", [b"0", b"-0", b"17", b"1.5", b"1e3", b"1" * 300])
def test_a_finite_json_number_is_a_time(ts: bytes) -> None:
    message = _envelope.decode("t", b'BK1{"id":"x","ts":' + ts + b"}\nP")
    assert (message.id, message.published_at) == ("x", float(ts))
    assert type(message.published_at) is float


def _nested(depth: int, opener: bytes) -> bytes:
    """A header whose deepest value is ``depth`` levels in (the header itself is one)."""
    inner = depth - 1
    if opener == b"[":
        value = b"[" * inner + b"]" * inner
    else:
        value = b'{"a":' * inner + b'"v"' + b"}" * inner
    return b'BK1{"id":"x","h":{"k":"v"},"z":' + value + b"}\nP"


@given(st.integers(1, 2 * _envelope.MAX_HEADER_DEPTH), st.sampled_from([b"[", b"{"]))
@example(990, b"[")
@example(_envelope.MAX_HEADER_DEPTH, b"[")
@example(_envelope.MAX_HEADER_DEPTH + 1, b"{")
def test_a_header_nested_past_the_bound_is_raw(depth: int, opener: bytes) -> None:
    data = _nested(max(depth, 2), opener)
    assert _is_raw(data) == (max(depth, 2) > _envelope.MAX_HEADER_DEPTH)


def test_brackets_in_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"id": "x", "h": {"k": "[{" * 100 + '\\"[' * 40}}).encode()
    message = _envelope.decode("t", b"BK1" + text + b"\nP")
    assert message.id == "x" and message.headers["k"].startswith("[{[{")


def test_the_verdict_does_not_depend_on_the_stack() -> None:
    """A header Python could read with its default recursion limit, but nested past the
    bound, is raw also when the stack is nearly used up; one within it is not."""
    deep, shallow = _nested(990, b"["), _nested(_envelope.MAX_HEADER_DEPTH, b"{")
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(2000)
        assert _is_raw(deep)
        assert not _is_raw(shallow)
    finally:
        sys.setrecursionlimit(limit)
