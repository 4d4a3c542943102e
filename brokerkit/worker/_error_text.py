"""The text of an error: moved to the core, :mod:`brokerkit._error_text` (the
serializers use it too); its names stay importable from here."""

from __future__ import annotations

from brokerkit._error_text import (
    HIDDEN_STEP,
    HIDDEN_VALUE,
    MAX_TEXT,
    error_text,
    masked_quotes,
    masked_text,
    msgspec_text,
    one_line,
    pydantic_text,
    quotes_values,
    shortened,
)

__all__ = [
    "HIDDEN_STEP",
    "HIDDEN_VALUE",
    "MAX_TEXT",
    "error_text",
    "masked_quotes",
    "masked_text",
    "msgspec_text",
    "one_line",
    "pydantic_text",
    "quotes_values",
    "shortened",
]
