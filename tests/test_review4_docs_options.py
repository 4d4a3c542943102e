"""The at-most-once backends without a dead-letter topic (kombu+memory, kombu+redis,
nats+core) refuse ``max_deliveries``, as redis+pubsub does, instead of taking it and
doing nothing; an unknown option names the scheme of the URL it was given in; and a
TLS option on a Redis URL without TLS is the InvalidOption docs/security.md promises.

Options are checked before anything is sent, so the refused URLs need no server.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
import brokerkit.aio
from brokerkit._options import MAX_COUNT
from brokerkit.exceptions import InvalidOption, InvalidURL

#: A URL of each backend that takes no max_deliveries; nothing listens at port 1.
AT_MOST_ONCE = {
    "kombu+memory": "kombu+memory://",
    "kombu+redis": "kombu+redis://127.0.0.1:1/0",
    "nats+core": "nats+core://127.0.0.1:1",
}
#: What each of them does take.
VALID = {
    "kombu+memory": {"connect_timeout", "prefix", "reconnect_timeout", "serializer"},
    "kombu+redis": {"connect_timeout", "prefix", "reconnect_timeout", "serializer"},
    "nats+core": {"connect_timeout", "prefix", "reconnect_timeout", "serializer"},
}


def _listed(message: str) -> set[str]:
    """The option names after "valid options:" in an error message."""
    found = re.search(r"valid options: ([a-z_, ]+)", message)
    assert found is not None, message
    return {name.strip() for name in found.group(1).split(",")}


@pytest.mark.parametrize("scheme", sorted(AT_MOST_ONCE))
@given(max_deliveries=st.integers(1, MAX_COUNT), in_url=st.booleans())
def test_max_deliveries_is_refused_naming_the_scheme_and_what_is_valid(
    scheme: str, max_deliveries: int, in_url: bool
) -> None:
    url = AT_MOST_ONCE[scheme]
    query, keywords = (
        (f"?max_deliveries={max_deliveries}", {})
        if in_url
        else ("", {"max_deliveries": max_deliveries})
    )
    with pytest.raises(InvalidOption) as refused:
        brokerkit.connect(url + query, **keywords)
    message = str(refused.value)
    assert message.startswith(f"max_deliveries does not apply to {scheme}:"), message
    assert VALID[scheme] <= _listed(message), message
    assert "max_deliveries" not in _listed(message), message


@pytest.mark.parametrize("scheme", sorted(AT_MOST_ONCE))
def test_max_deliveries_is_refused_over_the_asyncio_api_too(scheme: str) -> None:
    async def connect() -> None:
        await brokerkit.aio.connect(AT_MOST_ONCE[scheme], max_deliveries=3)

    with pytest.raises(InvalidOption, match=f"does not apply to {re.escape(scheme)}"):
        asyncio.run(connect())


@pytest.mark.parametrize("scheme", sorted(AT_MOST_ONCE))
@given(name=st.from_regex(r"[a-z][a-z_]{0,19}", fullmatch=True))
def test_an_unknown_option_names_the_scheme_of_its_url(scheme: str, name: str) -> None:
    valid = {"max_deliveries", "visibility_timeout", *VALID[scheme]}
    if name in valid:
        return
    with pytest.raises(InvalidOption) as refused:
        brokerkit.connect(f"{AT_MOST_ONCE[scheme]}?{name}=1")
    message = str(refused.value)
    assert f"unknown option {name!r} for {scheme};" in message, message
    assert _listed(message) == {"visibility_timeout", *VALID[scheme]}, message


def test_an_unset_max_deliveries_is_taken() -> None:
    with brokerkit.connect("kombu+memory://?max_deliveries=", max_deliveries=None) as broker:
        assert broker.options.max_deliveries is None


#: A value of each TLS option that the option's own check takes.
TLS_VALUES = {
    "ssl_ca_certs": __file__,
    "ssl_certfile": __file__,
    "ssl_keyfile": __file__,
    "ssl_cert_reqs": "required",
    "ssl_check_hostname": "true",
    "ssl_min_version": "772",
}


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream", "redis+pubsub"])
@pytest.mark.parametrize("option", sorted(TLS_VALUES))
def test_a_tls_option_without_tls_is_an_invalid_option(scheme: str, option: str) -> None:
    """docs/security.md: a TLS option on a URL without TLS is an InvalidOption."""
    tls = scheme.replace("redis", "rediss", 1)
    with pytest.raises(InvalidOption, match=f"{option} only appl.*{re.escape(tls)}://") as refused:
        brokerkit.connect(f"{scheme}://u:hunter2@127.0.0.1:1/0?{option}={TLS_VALUES[option]}")
    assert not isinstance(refused.value, InvalidURL)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "rediss+list://127.0.0.1:1/0",
        "rediss+stream://127.0.0.1:1/0",
        "rediss+pubsub://127.0.0.1:1/0",
        "kombu+redis://127.0.0.1:1/0",
        "kombu+amqps://127.0.0.1:1//",
    ],
)
def test_an_option_error_names_the_scheme_of_its_url_on_every_backend(url: str) -> None:
    """A backend that serves several schemes names the one the URL was given in."""
    scheme = url.split("://")[0]
    with pytest.raises(InvalidOption) as raised:
        brokerkit.connect(f"{url}?bogus=1")
    assert f"for {scheme}" in str(raised.value), str(raised.value)
