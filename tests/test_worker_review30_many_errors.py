"""A validation error with very many errors (thirtieth review of the worker): its text
is bounded, says how many errors there were, and is made from only as many errors as
fit in it (a handler's own ``model_validate`` of 100,000 bad items formatted all of
them, several MB joined then cut to 500 characters, at each of the worker's texts)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from brokerkit import _error_text  # (where the text is made: the worker's re-exports it)
from brokerkit.worker._error_text import MAX_TEXT, error_text, one_line, pydantic_text

ITEMS = 100_000

ITEM_TEXT = "Input should be a valid integer, unable to parse string as an integer [int_parsing]"


class Bulk(pydantic.BaseModel):
    xs: list[int]


@pytest.fixture(scope="module")
def many() -> pydantic.ValidationError:
    with pytest.raises(pydantic.ValidationError) as raised:
        Bulk.model_validate({"xs": ["password=hunter2"] * ITEMS})
    assert raised.value.error_count() == ITEMS
    return raised.value


@pytest.fixture
def formatted(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Each error :mod:`_error_text` formats."""
    seen: list[Any] = []
    original = _error_text._pydantic_error

    def counting(error: Any, *rest: Any) -> str:
        seen.append(error)
        return original(error, *rest)

    monkeypatch.setattr(_error_text, "_pydantic_error", counting)
    return seen


def test_the_text_is_bounded_and_counts_the_errors(
    many: pydantic.ValidationError, formatted: list[Any]
) -> None:
    text = error_text(many)
    assert text.startswith(f"Bulk: {ITEMS} errors: xs.0: {ITEM_TEXT}; xs.1: {ITEM_TEXT}; ")
    assert len(text) == MAX_TEXT + len("...") and text.endswith("...")
    assert "hunter2" not in text
    assert one_line(many) == text
    # each error's text is ~90 characters: a handful fill 500, never all 100,000
    assert 0 < len(formatted) <= 3 * (MAX_TEXT // len(ITEM_TEXT) + 1)


def test_pydantic_text_alone_stops_as_early(
    many: pydantic.ValidationError, formatted: list[Any]
) -> None:
    text = pydantic_text(many)
    assert text.startswith(f"{ITEMS} errors: xs.0: ") and len(text) == MAX_TEXT + len("...")
    assert 0 < len(formatted) <= 3 * (MAX_TEXT // len(ITEM_TEXT) + 1)


def test_a_few_errors_are_all_shown(formatted: list[Any]) -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        Bulk.model_validate({"xs": ["a", 1, "b"]})
    assert error_text(raised.value) == f"Bulk: 2 errors: xs.0: {ITEM_TEXT}; xs.2: {ITEM_TEXT}"
    assert len(formatted) == 2


def test_an_error_s_text_is_read_once(formatted: list[Any]) -> None:
    """The worker tells an error in its log line, its retry or dead-letter reason and
    the span: its errors are read the first time only."""
    with pytest.raises(pydantic.ValidationError) as raised:
        Bulk.model_validate({"xs": ["a"] * 50})
    first = error_text(raised.value)
    read = len(formatted)
    assert read > 0
    assert error_text(raised.value) == one_line(raised.value) == first
    assert len(formatted) == read
