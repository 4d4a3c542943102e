"""A secret option typed into the host (a '?' left out: ``nats://token=pw``,
``redis+stream://token=pw/0``) is refused unseen (the twenty-seventh review): it was
taken as the host name, shown in the URL's str and repr and in every error (the
driver's "Error -2 connecting to token=pw:6379" too). A host cannot hold '=' in any
case."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit import BrokerURL, InvalidURL


@pytest.mark.parametrize(
    "url",
    [
        "redis+stream://token=Kx3q/0",
        "redis+stream://sentinel_password=Kx3q",
        "nats://token=Kx3q",
        "nats://user:pw@token=Kx3q:4222",
        "kombu+amqp://password=Kx3q//",
        "memory://token=Kx3q",
        "redis+stream://h1,token=Kx3q/0?cluster=true",
        "redis+stream://client_secret=Kx3q:6379/0",
    ],
)
def test_a_secret_option_in_the_host_is_refused_unseen(url: str) -> None:
    with pytest.raises(InvalidURL, match="the host") as refused:
        BrokerURL.parse(url)
    message = str(refused.value)
    assert "kx3q" not in message.lower() and "pw" not in message, message
    assert "not shown" in message, message
    with pytest.raises(InvalidURL):
        brokerkit.connect(url)


@pytest.mark.parametrize(
    "url", ["nats://T0ken@h:4222", "memory://shop", "redis+stream://tokens-host/0", "memory://"]
)
def test_hosts_without_a_secret_option_are_still_taken(url: str) -> None:
    BrokerURL.parse(url)
