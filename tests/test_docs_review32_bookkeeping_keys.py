"""docs/wire-format.md lists the bookkeeping keys other programs must not write: every
key part redis+list and redis+stream keep beside a topic's queue or stream is in it.

The list left out redis+list's ``:moving:…`` (a consumer's fetch by moves),
``:returned`` (how many elements at the head came back) and ``:attempts`` (a raw
element's count): a program in another language, told what it must not write, was not
told about them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from brokerkit.backends.redis.list.keys import OWN_PARTS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "wire-format.md"
#: The parts of a redis+stream topic's keys besides its stream (stream/keys.py's
#: ``key(topic, part)`` calls).
STREAM_PARTS = ("vt", "lost", "scheduled", "delayed", "wake")


def _listed() -> set[str]:
    text = " ".join(PAGE.read_text().split())
    match = re.search(r"Other keys under the prefix \((.*?)\) are brokerkit's bookkeeping", text)
    assert match, "docs/wire-format.md has lost its list of bookkeeping keys"
    return set(re.findall(r"`:([a-z]+)", match[1]))


@pytest.mark.parametrize("part", sorted(set(OWN_PARTS) | set(STREAM_PARTS)))
def test_the_page_lists_a_bookkeeping_key(part: str) -> None:
    assert part in _listed()
