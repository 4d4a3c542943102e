"""A NATS token (a user part alone, ``nats://TOKEN@host``) written raw with a ``?``
and an ``=`` in it (``Tk?x=y``) was read as the host, the rest up to the ``@`` as an
option: ``nats://Tk?x=y@127.0.0.1:4222`` parsed as host ``tk`` and option ``x`` with
the value ``y@127.0.0.1:4222``, so ``str()`` of the URL and every error showed the
token as the host. An ``@`` in an option's value is taken (``client_name=me@host``)
only where what comes before the ``?`` cannot be a user part cut short: in a NATS
URL it can be a token, and no NATS option's value holds an ``@``, so it is refused
unseen, as an unencoded ``?`` in a password is. Found by the property test of
tests/test_secrets_review31_property_urls.py."""

from __future__ import annotations

import traceback

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.exceptions import InvalidURL

TOKEN = "S3cretTok"


@pytest.mark.parametrize(
    "url",
    [
        f"nats://{TOKEN}?x=y@127.0.0.1:4222",
        f"nats+core://{TOKEN}?prefix=@127.0.0.1:4222",
        f"NATS://{TOKEN}?{TOKEN}=@127.0.0.1:4222",
        f"nats://{TOKEN}?connect_timeout=1@127.0.0.1:4222",
    ],
)
def test_a_raw_question_mark_in_a_token_is_refused_unseen(url: str) -> None:
    with pytest.raises(InvalidURL) as caught:
        BrokerURL.parse(url)
    assert TOKEN.lower() not in "".join(traceback.format_exception(caught.value)).lower()
    with pytest.raises(InvalidURL) as connected:
        brokerkit.connect(url)
    assert "percent-encode" in str(connected.value)


def test_an_at_sign_in_a_redis_option_value_is_still_taken() -> None:
    url = BrokerURL.parse("redis+stream://cache:6379/0?client_name=me@host")
    assert url.host == "cache"
    assert url.query["client_name"] == "me@host"


def test_an_encoded_token_with_a_question_mark_is_read_and_masked() -> None:
    url = BrokerURL.parse("nats://Tk%3Fx%3Dy@127.0.0.1:4222")
    assert url.username == "Tk?x=y"
    assert str(url) == "nats://***@127.0.0.1:4222"
