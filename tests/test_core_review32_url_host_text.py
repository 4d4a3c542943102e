"""A host part that urllib reads otherwise than written is refused saying so: text
after an IPv6 address's ``]`` (``[::1]x``) was dropped without a word, and a non-ASCII
character that NFKC normalization reads as ``/ ? # @ :`` (``℀``, "a/c") was told
"the port must be a number"."""

from __future__ import annotations

import pytest

from brokerkit._url import BrokerURL
from brokerkit.exceptions import InvalidURL


@pytest.mark.parametrize("url", ["redis+stream://[::1]x/0", "redis+stream://[::1]x:6379/0"])
def test_text_after_an_ipv6_bracket_is_refused(url: str) -> None:
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse(url)
    assert "follows its IPv6 address's ']'" in str(refused.value)


def test_a_character_that_normalizes_to_a_delimiter_is_named() -> None:
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse("redis+stream://cache\u2100local/0")
    assert "Unicode normalization (NFKC)" in str(refused.value)


def test_one_in_a_password_is_named_without_showing_it() -> None:
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse("redis+stream://app:s3cr\u2100et@cache/0")
    message = str(refused.value)
    assert "Unicode normalization (NFKC)" in message
    assert "s3cr" not in message and "***" in message


@pytest.mark.parametrize(
    "url",
    ["redis+stream://[::1]:6379/0", "redis+stream://[::1]/0", "redis+stream://höst:6379/0"],
)
def test_good_hosts_still_parse(url: str) -> None:
    BrokerURL.parse(url)
