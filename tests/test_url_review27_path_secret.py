"""A path that holds what looks like a secret option is taken (the twenty-seventh
review): an AMQP vhost ``token=x``, a memory broker named ``x/token=y``. Until then
every such URL was refused with "a '&' or '/' typed for '?'", a valid one too. The path
is shown up to that ``=`` only, then one ``***`` for the rest and the query after it
(a '?' typed as '/' still never shows the secret), and no message names an option
that follows it. One typed after a raw '&' in the path (``/0&token=x``) is refused
again, unseen (review 27b: tests/test_url_review27b_path_typo.py)."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit import BrokerURL, InvalidOption, InvalidURL
from brokerkit.cli._output import redact


@pytest.mark.parametrize(
    ("url", "path", "shown"),
    [
        (
            "kombu+amqp://g:pw@h:5672/token=Kx3q",
            "/token=Kx3q",
            "kombu+amqp://g:***@h:5672/token=***",
        ),
        (
            "kombu+amqp://g:pw@h:5672/vhost-token=Kx3q?heartbeat=10",
            "/vhost-token=Kx3q",
            "kombu+amqp://g:***@h:5672/vhost-token=***",
        ),
        ("kombu+amqp://g:pw@h/a%2Fb%3Dc%26password=Kx3q", "/a/b=c&password=Kx3q", None),
        ("memory://shop/token=Kx3q", "/token=Kx3q", "memory://shop/token=***"),
        (
            "memory://shop/my_secret=Kx3q/more",
            "/my_secret=Kx3q/more",
            "memory://shop/my_secret=***",
        ),
    ],
)
def test_a_path_holding_a_secret_option_is_taken_and_masked(
    url: str, path: str, shown: str | None
) -> None:
    parsed = BrokerURL.parse(url)
    assert parsed.path == path
    for text in (str(parsed), repr(parsed)):
        assert "Kx3q" not in text and "heartbeat" not in text, text
        assert shown is None or shown in text, text
    # the driver gets the path back whole
    assert BrokerURL.parse(parsed.render(hide_password=False)).path == path
    assert urlsplit(parsed.render(hide_password=False)).query == urlsplit(url).query


def test_a_memory_broker_named_with_token_works() -> None:
    with brokerkit.connect("memory://review27/token=Kx3q") as broker:
        broker.publish("orders", b"one")
        delivery = broker.subscribe("orders").receive(timeout=0)
        assert delivery is not None and delivery.payload == b"one"
        delivery.ack()
        assert "Kx3q" not in repr(broker)


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        # an '&' typed for '?' is refused by the URL (review 27b:
        # tests/test_url_review27b_path_typo.py), a '/' by the Redis database check
        ("redis+stream://127.0.0.1:1/0&sentinel_password=Kx3q", "typed for '?'"),
        ("redis+stream://127.0.0.1:1/0/sentinel_password=Kx3q", "a '?' typed as '/'?"),
        ("redis+list://127.0.0.1:1/0&token=Kx3q&prefix=x", "typed for '?'"),
    ],
)
def test_a_secret_typed_into_a_redis_path_is_refused_unseen(url: str, refusal: str) -> None:
    with pytest.raises(InvalidURL) as refused:
        brokerkit.connect(url)
    assert "Kx3q" not in str(refused.value), str(refused.value)
    assert refusal in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    "tail", ["heartbeat=abc", "Kx3qname=1", "prefix=a b", "connect_timeout=-1"]
)
def test_no_option_after_a_secret_in_the_path_is_named(tail: str) -> None:
    with pytest.raises(InvalidOption, match="follows 'token'") as refused:
        brokerkit.connect(f"kombu+amqp://g:pw@127.0.0.1:1/token=Kx3q?{tail}")
    message = str(refused.value).partition("; valid options")[0]
    assert "Kx3q" not in message and tail.partition("=")[0] not in message, message


def test_an_option_given_twice_after_a_secret_in_the_path_is_not_named() -> None:
    with pytest.raises(InvalidURL, match="given twice") as refused:
        BrokerURL.parse("memory://x/token=Kx3q?prefix=a&prefix=b")
    assert "prefix" not in str(refused.value) and "Kx3q" not in str(refused.value)


def test_the_cli_masks_a_secret_in_the_path_and_the_query_after_it() -> None:
    url = "kombu+amqp://g:pw@h/token=Kx3q?cd=3xTAIL"
    text = "NOT_ALLOWED - vhost token=Kx3q not found; cd=3xTAIL"
    masked = redact(text, [url])
    assert "Kx3q" not in masked and "3xTAIL" not in masked, masked


@settings(max_examples=200, deadline=None)
@given(
    head=st.text(alphabet="abz09_-.", max_size=5),
    name=st.sampled_from(["token", "password", "client_secret", "PASSWD"]),
    value=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=8),
    query=st.sampled_from(["", "?heartbeat=10", "?e=1&f=2"]),
)
def test_no_secret_in_a_path_is_shown(head: str, name: str, value: str, query: str) -> None:
    mark = "\u00a7Q7"
    url = f"kombu+amqp://g:pw@h/{head}{name}={quote(value + mark, safe='')}{query}"
    parsed = BrokerURL.parse(url)
    assert parsed.path.endswith(value + mark)
    for text in (str(parsed), repr(parsed)):
        assert mark not in text and quote(mark) not in text, text
        assert "heartbeat" not in text and "e=1" not in text, text
