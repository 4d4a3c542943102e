"""The user-facing pages speak of versions a reader can see, never of the project's own
development sessions: docs/security.md said "Before session 21 it checked the chain
but not the host name", a date no reader can place (no release, tag or changelog
heading is called so)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = (
    "README.md",
    "docs/index.md",
    "docs/quickstart.md",
    "docs/patterns.md",
    "docs/architecture.md",
    "docs/deployments.md",
    "docs/demo.md",
    "docs/wire-format.md",
    "docs/security.md",
)
_SESSION = re.compile(r"\bsession\s+\d+", re.IGNORECASE)


@pytest.mark.parametrize("page", PAGES)
def test_no_page_dates_a_change_by_a_development_session(page: str) -> None:
    text = (ROOT / page).read_text()
    found = [
        f"line {text.count(chr(10), 0, match.start()) + 1}: {match[0]!r}"
        for match in _SESSION.finditer(text)
    ]
    assert found == []
