"""Broker URLs: parsing, rendering, and a password that never shows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
from brokerkit import BrokerURL, InvalidURL


def test_parses_every_part() -> None:
    url = BrokerURL.parse("rediss+stream://bob:s3cret@cache.example:6380/2?prefix=shop&maxlen=100")
    assert url.scheme == "rediss+stream"
    assert url.family == "rediss"
    assert (url.username, url.password) == ("bob", "s3cret")
    assert (url.host, url.port, url.path) == ("cache.example", 6380, "/2")
    assert dict(url.query) == {"prefix": "shop", "maxlen": "100"}


def test_render_round_trips_with_the_password_when_asked() -> None:
    text = "redis+list://bob:p%40ss@localhost:6379/0?prefix=x"
    url = BrokerURL.parse(text)
    assert url.password == "p@ss"
    assert BrokerURL.parse(url.render(hide_password=False)) == url


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("localhost:6379", "needs a scheme"),
        ("redis+list://host:notaport/0", "not a valid URL"),
        ("memory://?a=1&a=2", "given twice"),
        ("://host", "empty scheme"),
    ],
)
def test_malformed_urls_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(InvalidURL, match=complaint):
        BrokerURL.parse(text)


def test_a_non_string_url_is_refused() -> None:
    with pytest.raises(InvalidURL, match="must be a string"):
        BrokerURL.parse(6379)  # type: ignore[arg-type]


passwords = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=6,
).filter(lambda p: p.strip() == p and "***" not in p)


@given(password=passwords)
def test_password_never_in_str_repr_or_errors(password: str) -> None:
    from urllib.parse import quote

    text = f"redis+list://user:{quote(password, safe='')}@localhost:1/0?bogus_option=1"
    url = BrokerURL.parse(text)
    assert url.password == password
    for shown in (str(url), repr(url), url.render()):
        assert password not in shown
        assert quote(password, safe="") not in shown
    with pytest.raises(brokerkit.BrokerError) as excinfo:
        brokerkit.connect(text)  # unknown option: the error shows the URL's options, not secrets
    assert password not in str(excinfo.value)


def test_password_not_shown_when_the_url_does_not_even_parse() -> None:
    with pytest.raises(InvalidURL) as excinfo:
        BrokerURL.parse("redis+list://user:hunter2@host:99999999/0")
    assert "hunter2" not in str(excinfo.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis+list://user:s3cr3t/xyz@db.example:6379/0",  # '/' in the password
        "redis+list://user:4711/x@db.example:6379/0",  # ... that looks like a port
        "redis+list://user:s3#cr3t@db.example:6379/0",  # '#'
        "redis+list://user:47?11@db.example:6379/0",  # '?': the rest looks like an option
        "redis+list://user:ab?cd@db.example:6379/0",
    ],
)
def test_an_unencoded_password_is_refused_without_showing_it(url: str) -> None:
    secret = url.split("user:", 1)[1].split("@", 1)[0]
    with pytest.raises(InvalidURL, match="percent-encode") as excinfo:
        brokerkit.connect(url)
    for part in (secret, *secret.replace("/", " ").replace("#", " ").replace("?", " ").split()):
        assert part not in str(excinfo.value)


def test_an_at_sign_in_an_option_value_is_fine() -> None:
    url = BrokerURL.parse("redis+list://host:6379/0?client_name=me@host")
    assert url.query["client_name"] == "me@host"
