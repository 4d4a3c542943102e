"""A URL written back out reads back as the same hosts (the CLI hands URLs written so
to the processes it starts): a memory:// name holding a percent-encoded ``/ ? # @ ,``
was written raw, so that ``memory://a%40b`` came back as user ``a`` at host ``b``, and
one holding ``:`` was bracketed as an IPv6 address (``memory://[a:b]``, which does not
parse)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit._url import BrokerURL
from brokerkit.exceptions import InvalidURL


@pytest.mark.parametrize(
    "name", ["a@b", "a/b", "a?b", "a#b", "a,b", "a%b", "a:b", "a[b]", "x@y/z?w#v,u%t:s[r]"]
)
def test_a_memory_name_with_url_characters_reads_back_the_same(name: str) -> None:
    url = BrokerURL.parse(f"memory://{quote(name, safe='')}")
    assert url.hosts == ((name, None),)
    again = BrokerURL.parse(str(url))
    assert again.hosts == url.hosts and again.username is None


@given(st.text(alphabet="ab-._~/?#@,%:[]", min_size=1, max_size=12))
def test_any_memory_name_that_parses_reads_back_the_same(name: str) -> None:
    try:
        url = BrokerURL.parse(f"memory://{quote(name, safe='')}")
    except InvalidURL:
        return
    assert BrokerURL.parse(str(url)).hosts == url.hosts
