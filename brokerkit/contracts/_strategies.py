"""Hypothesis strategies for what a publisher may send, and what it must not."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = [
    "bad_headers",
    "bodies",
    "headers",
    "invalid_topics",
    "json_values",
    "texts",
    "topic_tails",
    "unserializable_bodies",
]

#: Any Unicode text a str can hold and UTF-8 can carry: empty, astral (non-BMP), NUL.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=64)

_scalars: st.SearchStrategy[Any] = st.none() | st.booleans() | texts
# Integers every serializer carries exactly (JSON readers in other languages use doubles).
_scalars |= st.integers(min_value=-(2**53), max_value=2**53)
_scalars |= st.floats(allow_nan=False, allow_infinity=False)

#: Nested JSON: objects, arrays, numbers, text, booleans and null.
json_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)

#: Bodies a publisher may send: bytes, text and JSON values.
bodies: st.SearchStrategy[Any] = st.binary(max_size=256) | texts | json_values

#: Headers: non-empty str names to str values.
#: Header names an application may set: not empty, and not the broker's own
#: ``x-dead-letter-*`` (publish refuses those).
header_names = texts.filter(lambda name: name and not name.lower().startswith("x-dead-letter-"))
headers = st.dictionaries(header_names, texts, max_size=5)

#: Bodies no serializer can encode: nothing of them may be published.
unserializable_bodies: st.SearchStrategy[Any] = st.sampled_from(
    [object(), {1, 2}, {"nested": [object()]}, float("nan"), {"x": float("inf")}, b"ok".hex]
)

_PUNCTUATION = ".:/@=+-"

#: Names that are not topics: empty, too long, with spaces or wildcards, or
#: starting with a punctuation mark.
invalid_topics: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["", " ", "a b", "orders*", "chat:room:?", "[x]", "tab\there", "x" * 201]),
    st.sampled_from(list(_PUNCTUATION)).flatmap(lambda p: st.just(p + "topic")),
    st.text(min_size=1, max_size=8).map(lambda s: f"bad topic {s}"),
    st.sampled_from([None, 3, b"orders"]),
)

#: Ends of valid topic and group names: every character a name may hold past its
#: first, runs and ends of punctuation included, where a backend that maps, escapes or
#: splits names could make two of them one.
topic_tails: st.SearchStrategy[str] = st.text(
    alphabet="ab_" + _PUNCTUATION, min_size=1, max_size=12
)

#: Header mappings that must be refused: not str to str, an empty name, text UTF-8
#: cannot hold (a lone surrogate), and the reserved ``x-dead-letter-*`` names, in any case.
bad_headers: st.SearchStrategy[Any] = st.sampled_from(
    [
        {"": "empty name"},
        {"n": 1},
        {"n": None},
        {1: "x"},
        {"n": b"bytes"},
        [("k", "v")],
        "k=v",
        {"n": "lone \ud800 surrogate"},
        {"\udc00": "v"},
        {"x-dead-letter-reason": "forged"},
        {"X-Dead-Letter-Reason": "forged"},
    ]
)
