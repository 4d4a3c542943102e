"""Broker URLs: parsing, rendering, and a password that never shows."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
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


#: In the middle of every generated password, so that "the password is not in this
#: message" cannot be true or false by chance: hypothesis also tries strings it finds
#: in the code under test ("unknow" is in every unknown-option message).
_MARK = "\u00a7Q7"


def _marked(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, b: a + _MARK + b, text, text)


passwords = _marked(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=3,
    )
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


# -- every form of a URL keeps its password hidden ---------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "redis+stream:/user:hunter2@host/0",  # one slash
        "redis+stream:user:hunter2@host/0",  # none
        "redis+stream:///user:hunter2@host/0",  # three
        "user:hunter2@host",  # no scheme at all
        "user:hunter2@host:6379/0",
        ":hunter2@host",
        "redis+stream//user:hunter2@host/0",  # the colon forgotten
    ],
)
def test_a_mistyped_url_is_refused_without_showing_the_password(text: str) -> None:
    with pytest.raises(InvalidURL) as excinfo:
        brokerkit.connect(text)
    assert "hunter2" not in str(excinfo.value)
    assert "***" in str(excinfo.value) or "not shown" in str(excinfo.value)


def test_a_scheme_with_one_slash_gets_a_hint() -> None:
    with pytest.raises(InvalidURL, match="write 'redis\\+stream://' with two slashes"):
        BrokerURL.parse("redis+stream:/user:pw@host/0")


@pytest.mark.parametrize(
    "secret",
    ["ab+cd/ef=", "a+b", "k=v", "p@ss", "s3cr3t/xyz", "x?y", "x#y", "x?y=z", "a/b=c"],
)
def test_user_info_that_must_be_encoded_is_refused_and_works_encoded(secret: str) -> None:
    from urllib.parse import quote

    text = f"redis+list://user:{secret}@db.example:6379/0"
    with pytest.raises(InvalidURL, match="percent-encode") as excinfo:
        BrokerURL.parse(text)
    assert secret not in str(excinfo.value)
    encoded = BrokerURL.parse(f"redis+list://user:{quote(secret, safe='')}@db.example:6379/0")
    assert (encoded.password, encoded.host, encoded.path) == (secret, "db.example", "/0")
    assert secret not in repr(encoded)


@pytest.mark.parametrize("key", ["password", "ssl_password", "token", "client_secret"])
def test_a_secret_in_the_query_string_is_masked(key: str) -> None:
    url = BrokerURL.parse(f"memory://x?{key}=hunter2&other=1")
    assert url.query[key] == "hunter2"
    assert "hunter2" not in str(url) and "hunter2" not in repr(url)
    assert f"{key}=***" in str(url)
    assert "hunter2" in url.render(hide_password=False)


_raw_passwords = _marked(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs"), blacklist_characters="%\\"),
        min_size=3,
    )
).filter(lambda p: "***" not in p)

_FORMS = [
    "redis+list://user:{pw}@db.example:6379/0",
    "redis+list://:{pw}@db.example:6379/0?prefix=x",
    "redis+list:/user:{pw}@db.example/0",
    "redis+list:user:{pw}@db.example/0",
    "user:{pw}@db.example",
    "redis+list://user:{pw}@db.example:6379/0?client_name=me@x",
    "redis+list://user:{pw}@db.example:notaport/0",
]


@settings(max_examples=300, deadline=None)
@given(password=_raw_passwords, form=st.sampled_from(_FORMS), encode=st.booleans())
def test_no_form_of_url_shows_a_random_password(password: str, form: str, encode: bool) -> None:
    from urllib.parse import quote

    text = form.format(pw=quote(password, safe="") if encode else password)
    try:
        url = BrokerURL.parse(text)
    except InvalidURL as exc:
        refused = str(exc)
    else:
        refused = ""
    assert password not in refused
    if refused:
        return
    # what parses, parses right: the password is never cut into host, port or path
    assert url.password == password
    for shown in (str(url), repr(url), url.render()):
        assert password not in shown
    bogus = dataclasses.replace(url, query={**url.query, "bogus": "1"})
    with pytest.raises(brokerkit.BrokerError) as excinfo:  # an unknown option, or the port
        brokerkit.connect(bogus.render(hide_password=False))
    assert password not in str(excinfo.value)


def test_a_scheme_typo_with_a_password_holding_a_scheme_separator_is_refused() -> None:
    # found by the property above: "://" inside the password made the URL look whole
    with pytest.raises(InvalidURL, match="two slashes") as refused:
        BrokerURL.parse("redis+list:/user:000§Q7://@db.example/0")
    assert "000§Q7" not in str(refused.value)


def test_an_option_given_twice_quotes_every_host_of_the_url() -> None:
    # the message quoted the URL as its first host alone ('redis+stream://s1:1/0?...')
    with pytest.raises(InvalidURL) as raised:
        BrokerURL.parse("redis+stream://s1:1,s2:2/0?db=0&db=1")
    assert "'redis+stream://s1:1,s2:2/0?db=0&db=1'" in str(raised.value)
