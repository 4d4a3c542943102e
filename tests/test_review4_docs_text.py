"""What the docs say about URLs, backends and tested servers is what the code does:
the characters a user name or password must percent-encode (docs/concepts.md and
docs/security.md), the backends the front page names (docs/index.md), and the
nats-server version docs/backends/nats.md says the tests run.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.exceptions import InvalidURL
from tests.nats_server import find_nats_server

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _text(page: str) -> str:
    """A docs page with its lines joined, so that a sentence is one string."""
    return " ".join((DOCS / page).read_text().split())


def _documented_encodings(page: str, sentence: str) -> dict[str, str]:
    """``{character: its percent-encoding}`` as ``sentence`` (a regex with two
    groups: the characters, then their encodings) lists them on ``page``."""
    found = re.findall(sentence, _text(page))
    assert len(found) == 1, f"{page}: {len(found)} matches of {sentence!r}"
    characters, encodings = found[0]
    assert len(characters.split()) == len(encodings.split()), found[0]
    return dict(zip(characters.split(), encodings.split(), strict=True))


DOCUMENTED = {
    "concepts.md": _documented_encodings(
        "concepts.md", r"Percent-encode `([^`]+)` in a user name or password \(`([^`]+)`\)"
    ),
    "security.md": _documented_encodings(
        "security.md", r"holds `([^`]+)` must be percent-encoded \(`([^`]+)`\)"
    ),
}


@pytest.mark.parametrize("page", sorted(DOCUMENTED))
def test_the_pages_list_the_characters_a_url_refuses_bare(page: str) -> None:
    listed = DOCUMENTED[page]
    assert {c: quote(c, safe="") for c in listed} == listed, f"{page}: a wrong encoding"
    assert sorted(listed) == sorted("/?#@+="), f"{page} lists {sorted(listed)}"


@pytest.mark.parametrize("page", sorted(DOCUMENTED))
@given(data=st.data())
def test_each_listed_character_is_refused_bare_and_taken_encoded(
    page: str, data: st.DataObject
) -> None:
    character = data.draw(st.sampled_from(sorted(DOCUMENTED[page])))
    safe = "abcXYZ019-_.~"
    before, after = st.text(safe, min_size=4, max_size=8), st.text(safe, max_size=8)
    password = data.draw(before) + character + data.draw(after)
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse(f"redis+list://app:{password}@cache:6379/0")
    assert password not in str(refused.value)
    encoded = BrokerURL.parse(f"redis+list://app:{quote(password, safe='')}@cache:6379/0")
    assert (encoded.username, encoded.password, encoded.host) == ("app", password, "cache")


#: The words docs/index.md's opening paragraph names each built-in backend family by.
FAMILY_WORDS = {
    "memory": "in-memory",
    "redis": "Redis",
    "rediss": "Redis",
    "kombu": "RabbitMQ",
    "nats": "NATS JetStream",
    "nats+core": "core NATS",
}


def test_the_front_page_names_every_built_in_backend() -> None:
    opening = _text("index.md").split("```", 1)[0]
    for backend in brokerkit.list_backends():
        if not backend.plugin.startswith("brokerkit.backends."):
            continue  # a plugin installed beside brokerkit, not one of its own
        for scheme in backend.schemes:
            family = scheme if scheme in FAMILY_WORDS else scheme.split("+")[0]
            assert family in FAMILY_WORDS, f"no words for {scheme}: add them, and to index.md"
            assert FAMILY_WORDS[family] in opening, f"index.md does not name {scheme}"


def test_the_nats_page_names_the_server_version_the_tests_run() -> None:
    try:
        binary = find_nats_server()
    except RuntimeError as missing:
        pytest.skip(str(missing))
    reply = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    version = re.search(r"v(\d+\.\d+)", reply.stdout)
    assert version is not None, reply.stdout
    named = re.findall(r"[Tt]ested against (?:nats-server )?(\d+\.\d+)", _text("backends/nats.md"))
    assert named, "docs/backends/nats.md names no tested version"
    assert set(named) == {version.group(1)}, f"nats.md says {named}, the tests run {version[1]}"
