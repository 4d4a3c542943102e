"""What follows a secret query option is never shown (the twenty-sixth review).

A secret query value written with a raw '&' followed by ``name=``
(``sentinel_password=Tr0ub4dor&e=3xTAIL``) is split by the query parser into the
secret and an option ``e=3xTAIL`` that is its tail: so the str/repr of a URL, and every
message quoting one, shows the query up to the first secret option's name, then one
``***`` for its value and all that follows it; no message names an option after a
secret. A secret option typed where no option is read (``?sentinel=m?sentinel_password=pw``,
a '?' for '&') is refused, unseen, instead of being kept and shown as part of a value
(one in the path is taken since the twenty-seventh review, and masked there:
tests/test_url_review27_path_secret.py).
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit import BrokerURL, InvalidOption, InvalidURL
from brokerkit._secret_options import is_secret
from brokerkit.exceptions import BrokerError

#: In every secret's head and tail, so that "not shown" cannot hold by chance.
_HEAD = "\u00a7H7"
_TAIL = "\u00a7T9"
_SENTINEL = "redis+stream://127.0.0.1:1/0?sentinel=m&sentinel_password="


def _hidden(parts: list[str], text: str) -> bool:
    return not any(
        form in text for part in parts for form in (part, quote(part, safe=""), quote(part))
    )


def _outcome(url: str) -> list[str]:
    """Everything brokerkit shows of ``url``: the error parsing or connecting raises,
    or the str/repr of the parsed URL and of the broker."""
    try:
        parsed = BrokerURL.parse(url)
    except BrokerError as exc:
        return [str(exc)]
    shown = [str(parsed), repr(parsed)]
    try:
        broker = brokerkit.connect(url)
    except BrokerError as exc:
        return [*shown, str(exc)]
    try:
        return [*shown, repr(broker), str(broker.url)]
    finally:
        broker.close()


# -- the hunt's repro: every other URL error quoted the secret's tail ---------------------


@pytest.mark.parametrize(
    ("url", "still_said"),
    [
        (
            "redis+stream://h1:26379,h2:99999/0?sentinel=mymaster&sentinel_password="
            "Tr0ub4dor&e=3xTAIL",
            "lists the host 'h2:99999'",
        ),
        (
            "redis+stream://h1:2637a/0?sentinel=m&sentinel_password=Tr0ub4dor&e=3xTAIL",
            "the port must be a number from 1 to 65535",
        ),
        ("memory://h:0?token=Tr0ub4dor&e=3xTAIL", "names port 0"),
        (
            "redis+stream:/h1/0?sentinel=m&sentinel_password=Tr0ub4dor&e=3xTAIL",
            "write 'redis+stream://' with two slashes",
        ),
        ("redis+stream://,h2/0?sentinel=m&sentinel_password=Tr0ub4dor&e=3xTAIL", "empty first"),
    ],
)
def test_no_url_error_quotes_the_tail_of_a_secret(url: str, still_said: str) -> None:
    with pytest.raises(InvalidURL, match=re.escape(still_said)) as refused:
        brokerkit.connect(url)
    message = str(refused.value)
    assert _hidden(["Tr0ub4dor", "3xTAIL", "e=3"], message), message
    assert "sentinel_password=***'" in message or "token=***'" in message, message


def test_an_option_given_twice_after_a_secret_is_not_named() -> None:
    with pytest.raises(InvalidURL, match="given twice") as refused:
        BrokerURL.parse(_SENTINEL + "Tr0ub4dor&e=3xTAIL&e=4")
    message = str(refused.value)
    assert _hidden(["Tr0ub4dor", "3xTAIL", "'e'", "e="], message), message
    assert "after 'sentinel_password'" in message and "%26" in message, message


def test_an_option_given_twice_before_any_secret_is_still_named() -> None:
    with pytest.raises(InvalidURL, match="the option 'prefix' is given twice") as refused:
        BrokerURL.parse("redis+stream://h/0?prefix=a&prefix=b&sentinel=m&sentinel_password=Kx3q")
    assert "Kx3q" not in str(refused.value)


# -- str and repr: the query up to the first secret's name, then one *** -----------------


def test_the_query_shows_up_to_the_secret_and_hides_all_after_it() -> None:
    url = BrokerURL.parse(_SENTINEL + "Tr0ub4dor&e=3xTAIL&prefix=shop")
    assert url.query["e"] == "3xTAIL" and url.query["prefix"] == "shop"  # still read
    expected = "redis+stream://127.0.0.1:1/0?sentinel=m&sentinel_password=***"
    assert str(url) == expected
    assert repr(url) == f"BrokerURL({expected!r})"
    assert "3xTAIL" in url.render(hide_password=False)  # the driver still gets it all
    assert str(BrokerURL.parse("nats://h:4222?token=t0k&prefix=p")) == "nats://h:4222?token=***"
    assert str(BrokerURL.parse("memory://?prefix=p")) == "memory://?prefix=p"


def test_a_broker_repr_does_not_show_the_tail_of_a_secret() -> None:
    broker = brokerkit.connect(_SENTINEL + "Tr0ub4dor&prefix=3xTAIL")
    try:
        assert broker.options.prefix == "3xTAIL"  # type: ignore[attr-defined]
        assert _hidden(["Tr0ub4dor", "3xTAIL"], repr(broker)), repr(broker)
        assert "sentinel_password=***" in repr(broker)
    finally:
        broker.close()


_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
_values = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    before=st.dictionaries(
        _names.filter(lambda n: not is_secret(n) and "zq" not in n),
        _values.filter(lambda v: "zq" not in v and "\u00a7" not in v),
        max_size=3,
    ),
    secret=st.sampled_from(["sentinel_password", "token", "Client_Secret", "passwd"]),
    after=st.lists(st.tuples(_names, _values), max_size=4),
)
def test_nothing_after_a_secret_is_shown_by_str_or_repr(
    before: dict[str, str], secret: str, after: list[tuple[str, str]]
) -> None:
    query = {**before, secret: _HEAD}
    for index, (name, value) in enumerate(after):
        query.setdefault(f"zq{index}{name}", value + _TAIL)
    url = BrokerURL(scheme="redis+stream", host="h", path="/0", query=query)
    for shown in (str(url), repr(url)):
        assert _hidden([_HEAD, _TAIL, "zq"], shown), shown
        assert shown.rstrip("')").endswith(f"{quote(secret, safe='*')}=***"), shown


# -- any secret with raw & = ? #, in any URL error: neither it nor its tail is shown ------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=6)
_tail_names = st.from_regex(r"zq[a-z0-9_]{0,6}", fullmatch=True)


@settings(max_examples=400, deadline=None)
@given(
    head=_text,
    name=_tail_names,
    value=_text,
    more=st.text(alphabet="&=?#+@/:%abz9_", max_size=6),
    form=st.sampled_from(
        [
            "redis+stream://h1:26379,h2:99999/0?sentinel=m&sentinel_password={secret}",
            "redis+stream://h1:2637a/0?sentinel=m&sentinel_password={secret}",
            "redis+stream://h1:26379/0?sentinel=m&sentinel_password={secret}&{name}=4",
            "redis+stream://127.0.0.1:1/0?sentinel=m&sentinel_password={secret}&prefix=p",
            "redis+stream://127.0.0.1:1/0?sentinel=m&sentinel_password={secret}",
            "redis+stream:/h1/0?sentinel=m&sentinel_password={secret}",
            "redis+list://:pw@127.0.0.1:1,/0?token={secret}",
            "memory://h:0?token={secret}",
            "memory://?client_secret={secret}",
            "nats://127.0.0.1:99999?token={secret}",
            "kombu+amqp://g:g@127.0.0.1:0//?password={secret}&heartbeat=1",
        ]
    ),
)
def test_no_error_or_repr_shows_a_raw_secret_or_its_tail(
    head: str, name: str, value: str, more: str, form: str
) -> None:
    # written unencoded: "<head>&<name>=<value><more>" is one secret, and the query
    # parser reads its tail as the option <name> (and maybe more)
    secret = f"{head}{_HEAD}&{name}={value}{_TAIL}{more}"
    url = form.format(secret=secret, name=name)
    for shown in _outcome(url):
        assert _hidden([_HEAD, _TAIL, name], shown), (url, shown)


# -- options further after a secret are not quoted either ---------------------------------


@pytest.mark.parametrize(
    ("tail", "name"),
    [
        ("&prefix=p&visibility_timeout=Kx3q", "visibility_timeout"),
        ("&prefix=p&db=Kx3q", "db"),
        ("&prefix=p&socket_timeout=Kx3q", "socket_timeout"),
        ("&prefix=p&Kx3q=1", "Kx3q"),
    ],
)
def test_an_option_two_after_a_secret_is_not_quoted(tail: str, name: str) -> None:
    # nor named (the twenty-seventh review): its name too may be part of the secret
    with pytest.raises((InvalidOption, InvalidURL), match="follows 'sentinel_password'") as refused:
        brokerkit.connect(_SENTINEL + "s3cr" + tail)
    message = str(refused.value)
    assert _hidden(["Kx3q", "s3cr", "prefix=p"], message), message
    assert name not in message.partition("valid options")[0], message
    assert "%26" in message, message


# -- a secret option typed where no option is read is refused unseen ---------------------


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("redis+stream://h/0?sentinel=m?sentinel_password=PWmark", "value of 'sentinel'"),
        ("redis+stream://h/0?prefix=a?sentinel_password=PWmark", "value of 'prefix'"),
        ("redis+stream://h/0?sentinel=msentinel_password=PWmark", "value of 'sentinel'"),
        ("redis+stream://h/0?sentinel=m;sentinel_password=PWmark", "value of 'sentinel'"),
        ("redis+stream://h/0?sentinel=m?pass%77ord=PWmark", "value of 'sentinel'"),
        ("redis+stream://h/0?sentinel=m#sentinel_password=PWmark", "the fragment"),
        ("nats://h:4222?prefix=a?token=PWmark", "value of 'prefix'"),
        ("memory://?prefix=a?token=PWmark", "value of 'prefix'"),
        (
            "redis+stream://h/0?sentinel=m&sentinel_password=x&prefix=a?token=PWmark",
            "value of an option that follows 'sentinel_password'",
        ),
    ],
)
def test_a_secret_option_typed_into_something_else_is_refused_unseen(url: str, where: str) -> None:
    with pytest.raises(InvalidURL, match=where) as refused:
        BrokerURL.parse(url)
    message = str(refused.value)
    assert _hidden(["PWmark"], message), message
    assert "typed for" in message and "not shown" in message, message
    if "follows" in where:
        assert "'prefix'" not in message, message
    with pytest.raises(InvalidURL):
        brokerkit.connect(url)


@settings(max_examples=300, deadline=None)
@given(
    typo=st.sampled_from(["?", ";", ",", " ", "", "/", "|", "%3F", ":"]),
    option=st.sampled_from(["sentinel", "prefix", "client_name"]),
    secret=st.sampled_from(["sentinel_password", "token", "client_secret", "PASSWORD"]),
    value=_text,
)
def test_any_misplaced_secret_option_is_refused_unseen(
    typo: str, option: str, secret: str, value: str
) -> None:
    url = f"redis+stream://h/0?{option}=m{typo}{secret}={value}{_HEAD}"
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse(url)
    assert _hidden([_HEAD], str(refused.value)), str(refused.value)


def test_a_percent_encoded_question_mark_in_a_value_is_the_value() -> None:
    url = BrokerURL.parse("redis+stream://h/0?client_name=a%3Fx%3Dtoken&sentinel=m")
    assert url.query["client_name"] == "a?x=token"
    encoded = BrokerURL.parse("redis+stream://h/0?client_name=a%3Ftoken%3Dx")
    assert encoded.query["client_name"] == "a?token=x"


# -- a secret option named in percent-encoding is masked all the same --------------------


def test_a_percent_encoded_secret_name_hides_its_value_in_errors() -> None:
    for url in (
        "redis+stream://h/0?pass%77ord=PWmark&x=1&x=2",
        "redis+stream://h:0/0?sentinel=m&sentinel%5Fpassword=PWmark",
        "redis+stream:/h/0?sentinel=m&to%6Ben=PWmark",
    ):
        with pytest.raises(InvalidURL) as refused:
            BrokerURL.parse(url)
        assert _hidden(["PWmark"], str(refused.value)), str(refused.value)
