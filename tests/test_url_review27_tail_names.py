"""No message names an option that follows a secret query option (the twenty-seventh
review): a secret written unencoded as ``Tr0ub4dor&prefetch=x`` is read as the secret
``Tr0ub4dor`` and an option ``prefetch=x`` that is its tail, so naming that option, even
a known one whose value alone is hidden, shows part of the secret. The message refusing
it is the same whichever option it is, and whatever its value."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit import BrokerURL, InvalidOption, InvalidURL
from brokerkit.backends.redis._options import redis_database

_SENTINEL = "redis+stream://127.0.0.1:1/0?sentinel=m&sentinel_password=Kx3q"


def _refusal(url: str) -> str:
    with pytest.raises((InvalidOption, InvalidURL)) as refused:
        brokerkit.connect(url)
    return str(refused.value)


def _before_the_list(message: str) -> str:
    """The message but its list of valid options (which names every option)."""
    return message.partition("; valid options")[0]


#: Options after a secret whose value (or whose presence with the others) is refused:
#: the secret "Kx3q&<tail>" would be one password written unencoded.
_TAILS = [
    "visibility_timeout=x",
    "visibility_timeout=-1",
    "max_deliveries=0",
    "replicas=99",
    "prefix=a b",
    "serializer=nope",
    "cluster=true",
    "cluster=maybe",
    "socket_timeout=abc",
    "client_name=a b",
    "ssl_ca_certs=/nonexistent",
    "maxlen=0",
    "heartbeat_interval=999",
    "prefetch=x",
]


@pytest.mark.parametrize("tail", _TAILS)
def test_an_option_after_a_secret_is_not_named(tail: str) -> None:
    message = _refusal(f"{_SENTINEL}&{tail}")
    name, _, value = tail.partition("=")
    assert "follows 'sentinel_password'" in message, message
    assert name not in _before_the_list(message), message
    assert "Kx3q" not in message and value not in _before_the_list(message), message


def test_every_refused_option_after_a_secret_gets_the_same_message() -> None:
    messages = {_before_the_list(_refusal(f"{_SENTINEL}&{tail}")) for tail in _TAILS}
    assert len(messages) == 1, messages


@pytest.mark.parametrize("tail", ["db=abc", "db=3", "ssl_certfile=/x"])
def test_the_database_and_tls_keys_after_a_secret_are_not_named(tail: str) -> None:
    with pytest.raises((InvalidOption, InvalidURL)) as refused:
        redis_database(BrokerURL.parse(f"{_SENTINEL}&{tail}"))
    message = str(refused.value)
    assert "follows 'sentinel_password'" in message, message
    assert tail.partition("=")[0] not in message and "Kx3q" not in message, message


def test_a_not_applicable_option_after_a_secret_is_not_named() -> None:
    message = _refusal("kombu+memory://?token=Kx3q&max_deliveries=3")
    assert "follows 'token'" in message, message
    assert "max_deliveries" not in _before_the_list(message), message


def test_options_before_a_secret_are_still_named() -> None:
    message = _refusal("redis+stream://127.0.0.1:1/0?visibility_timeout=x&sentinel=m")
    assert "visibility_timeout='x'" in message, message
    message = _refusal("redis+stream://127.0.0.1:1/0?cluster=true&sentinel=m&sentinel_password=s")
    assert "cluster=true and sentinel= cannot be combined" in message, message


def test_an_unknown_option_before_a_secret_is_named_not_blamed_on_it() -> None:
    message = _refusal(f"redis+stream://127.0.0.1:1/0?foo=1&{_SENTINEL.partition('?')[2]}&prefix=p")
    assert "unknown option 'foo'" in message, message


def test_a_keyword_for_an_option_after_a_secret_is_named() -> None:
    with pytest.raises(InvalidOption, match="visibility_timeout"):
        brokerkit.connect(f"{_SENTINEL}&visibility_timeout=1", visibility_timeout=-1)
