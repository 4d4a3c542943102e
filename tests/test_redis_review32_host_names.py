"""A Redis URL whose host no resolver could be asked for (an empty label, a label of
more than 63 characters) is refused when the broker is made, with InvalidURL naming
the host, on every Redis backend and deployment. Before, the broker was made and its
first publish raised a bare UnicodeError from the socket's IDNA encoding ("label empty
or too long"), which docs/reliability.md does not list."""

from __future__ import annotations

import asyncio

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import InvalidURL

LONG = "a" * 64 + ".example"
SCHEMES = ["redis+list", "redis+stream", "redis+pubsub"]
URLS = {
    "long-label": f"//user:s3cret@{LONG}:6379",
    "empty-label": "//a..b:6379",
    "cluster-seed": f"//127.0.0.1:7000,{LONG}:7001/0?cluster=true",
    "sentinel": "//127.0.0.1:26379,a..b:26380/0?sentinel=main",
}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("where", URLS.values(), ids=URLS.keys())
def test_a_host_that_is_no_host_name_is_refused_at_connect(scheme: str, where: str) -> None:
    with pytest.raises(InvalidURL, match="which is not a host name") as refused:
        brokerkit.connect(scheme + ":" + where)
    assert "1 to 63 characters" in str(refused.value)
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_asyncio_brokers_refuse_it_too(scheme: str) -> None:
    async def connect() -> None:
        await brokerkit.aio.connect(f"{scheme}://{LONG}:6379")

    with pytest.raises(InvalidURL, match="which is not a host name"):
        asyncio.run(connect())


def test_an_international_host_name_is_taken() -> None:
    broker = brokerkit.connect("redis+list://bücher.example:6379")
    broker.close()


def test_a_huge_host_is_not_quoted_whole() -> None:
    with pytest.raises(InvalidURL) as refused:
        brokerkit.connect(f"redis+list://user:s3cret@{'a' * 5000}.example:6379")
    assert len(str(refused.value)) < 400 and "s3cret" not in str(refused.value)
