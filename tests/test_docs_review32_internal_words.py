"""The user-facing pages speak of versions a reader can see, never of the project's own
development sessions: docs/security.md said "Before session 21 it checked the chain
but not the host name", a date no reader can place (no release, tag or changelog
heading is called so)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: docs/benchmarks.md is left out: it is the lab notebook of issue 18's measurements,
#: whose rounds are named by the session that measured them, each with its commit.
PAGES = (
    "README.md",
    *sorted(
        str(page.relative_to(ROOT))
        for page in (ROOT / "docs").rglob("*.md")
        if page.name != "benchmarks.md" and "_build" not in page.parts
    ),
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
