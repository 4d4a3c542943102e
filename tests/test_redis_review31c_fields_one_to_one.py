"""redis+stream shows a raw entry's names and values one to one over all byte strings
(:func:`fields_message`): the bytes come back from the text alone (unescape text that
reads as escaped, take any other as UTF-8), and UTF-8 that does not read as escaped is
shown as it is. Before, 0xFF and the four characters ``\\xff`` gave the same text."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from brokerkit.backends.redis._stream_fields import fields_message

_ESCAPED = re.compile(r"\\(?:\\|x[89a-f][0-9a-f])")
#: Pieces that make escapes, near-escapes and bytes that are not UTF-8 likely.
_PIECES = [b"\\", b"x", b"f", b"8", b"7", b"\xff", b"\x80", b"a", "é".encode(), b"\xc3", b"\xed"]
_VALUES = st.one_of(st.lists(st.sampled_from(_PIECES), max_size=8).map(b"".join), st.binary())


def _shown(value: bytes) -> str:
    payload = json.loads(fields_message("t", {b"k": value}).payload)
    assert list(payload) == ["k"]
    text: str = payload["k"]
    return text


def _bytes_of(text: str) -> bytes:
    """The bytes ``text`` shows, as docs/backends/redis-stream.md says to read them."""
    if "\\" not in text or "\\" in _ESCAPED.sub("", text):
        return text.encode()
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] != "\\":
            out += text[i].encode()
            i += 1
        elif text[i + 1] == "\\":
            out += b"\\"
            i += 2
        else:
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
    return bytes(out)


@settings(max_examples=500, deadline=None)
@given(_VALUES)
def test_the_bytes_come_back_from_the_text(value: bytes) -> None:
    assert _bytes_of(_shown(value)) == value


_TEXT = st.text(st.one_of(st.sampled_from("\\x8f"), st.characters(exclude_categories=["Cs"])))


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_text_that_does_not_read_as_escaped_is_as_it_is(text: str) -> None:
    if "\\" not in text or "\\" in _ESCAPED.sub("", text):
        assert _shown(text.encode()) == text


def test_two_names_never_merge() -> None:
    payload = json.loads(fields_message("t", {b"\\xff": b"one", b"\xff": b"two"}).payload)
    assert payload == {"\\\\xff": "one", "\\xff": "two"}
