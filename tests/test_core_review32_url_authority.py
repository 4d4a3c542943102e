"""A URL whose host part does not parse is refused naming what is wrong with it, and
never quotes what may be a password: ``redis+stream://user:s3cret/0`` (the ``@host``
left out) was refused quoting ``user:s3cret`` whole, and an unclosed ``[``, an IPv6
address without brackets or a port out of range were all told the same generic
"the port must be a number ... percent-encoded" text."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.exceptions import InvalidURL


@pytest.mark.parametrize(
    "url",
    [
        "redis+stream://user:s3cret/0",
        "redis+stream://user:s3cret",
        "redis+stream://:s3cret/0",
        "kombu+amqp://guest:s3cret//",
        "nats://user:s3cret",
        "redis+stream://h1,h2:s3cret/0",
        "redis+stream://h:63:s3cret/0",
    ],
)
def test_what_stands_where_a_port_goes_is_not_quoted(url: str) -> None:
    with pytest.raises(InvalidURL) as refused:
        brokerkit.connect(url)
    message = str(refused.value)
    assert "s3cret" not in message, message
    assert "***" in message, message
    assert "from 1 to 65535" in message, message


def test_a_port_that_is_not_a_number_says_so_without_quoting_it() -> None:
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse("redis+stream://cache.local:63x9/0")
    message = str(refused.value)
    assert "'redis+stream://cache.local:***/0'" in message, message
    assert "63x9" not in message
    assert "not a port number" in message, message


def test_an_unclosed_ipv6_bracket_is_named() -> None:
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse("redis+stream://[::1/0")
    message = str(refused.value)
    assert "'['" in message and "']'" in message, message
    assert "[::1]:6379" in message, message


def test_an_ipv6_address_without_brackets_is_told_to_use_them() -> None:
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse("redis+stream://fe80::1:6379/0")
    message = str(refused.value)
    assert "in brackets" in message, message
    assert "[fe80::1]:6379" in message, message


@pytest.mark.parametrize(
    ("port", "shown"), [("70000", "port 70000"), ("9" * 5000, "a port of 5,000 digits")]
)
def test_a_port_out_of_range_is_named(port: str, shown: str) -> None:
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse(f"redis+stream://cache.local:{port}/0")
    message = str(refused.value)
    assert shown in message, message
    assert "a port is a number from 1 to 65535" in message, message
    assert len(message) < 400


def test_good_hosts_still_parse() -> None:
    assert BrokerURL.parse("redis+stream://[::1]:6379/0").host == "::1"
    assert BrokerURL.parse("redis+stream://u:p%3Aw@h:6379/0").password == "p:w"
    assert BrokerURL.parse("redis+stream://h1:7000,h2:7001/0").more_hosts == (("h2", 7001),)
