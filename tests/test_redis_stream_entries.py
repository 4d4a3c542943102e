"""redis+stream's fast reading of an entry's header reads every header exactly as
the envelope's ``message_from_header`` does (no server needed)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from brokerkit.backends.redis._envelope import message_from_header
from brokerkit.backends.redis.stream.entries import header_message

_LINE = st.one_of(
    st.sampled_from(["bin", "json", "text", "msgpack", "text/csv", "a/b", "", "x"]),
    st.sampled_from(["1700000000.5", "nan", "inf", "-inf", "1_0", " 2.5 ", "1e999", "0x1"]),
    st.text(max_size=12),
    st.from_regex(r"[0-9a-f]{8}", fullmatch=True),
)


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    """Headers of two to four lines, mostly near the shape brokerkit writes, some
    raw bytes (not UTF-8, lone surrogates escaped in JSON)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=40))
    lines = draw(st.lists(_LINE, min_size=2, max_size=4))
    return "\n".join(lines).encode(errors="surrogatepass")


@settings(max_examples=500)
@given(header=headers())
@example(header=b"0190-abc\nbin\n1700000000.5")
@example(header=b"0190-abc\njson\n1700000000.5\n{}")
@example(header=b"\nbin\n1.0")  # an empty id
@example(header=b"id\nnoslash\n1.0")
@example(header=b"id\nbin\nnan")
@example(header=b"id\nbin\n1e999")
@example(header=b"id\xff\nbin\n1.0")  # not UTF-8
@example(header=b"id\xed\xa0\x80\nbin\n1.0")  # an encoded lone surrogate
@example(header=b'{"id":"x","ct":"a/b","ts":1.0}')
def test_a_header_reads_as_the_envelope_reads_it(header: bytes) -> None:
    assert header_message("orders", header, b"body") == message_from_header(
        "orders", header, b"body"
    )
