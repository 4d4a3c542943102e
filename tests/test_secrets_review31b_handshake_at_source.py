"""A raw redis-py error from a connection's handshake never shows the password, even
where it is not turned into brokerkit's (the pub/sub listener's and the periodic
keepers' own calls, which log what they catch): the handshake masks it as it is
raised (``_connected``), not only :func:`translate_errors`. Against a real
redis-server whose ``HELLO`` and ``AUTH`` are renamed away, so that it echoes them
with their arguments."""

from __future__ import annotations

import asyncio
import traceback
from urllib.parse import quote

import pytest
import redis

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._client import make_client
from brokerkit.backends.redis._client_async import make_client as make_async_client
from tests.redis_server import RedisServer
from tests.test_secrets_review31_echoed_credentials import PASSWORD, no_hello

__all__ = ["no_hello"]  # a fixture


def _url(port: int) -> BrokerURL:
    password = quote(PASSWORD, safe="")
    return BrokerURL.parse(f"redis+stream://:{password}@127.0.0.1:{port}/0?protocol=3")


def _check(error: BaseException) -> None:
    shown = "".join(traceback.format_exception(error)) + repr(error) + repr(error.args)
    assert PASSWORD not in shown and quote(PASSWORD, safe="") not in shown
    assert "unknown command" in shown  # what the server did not know is still said


def test_a_raw_call_of_the_sync_client_never_shows_the_password(no_hello: RedisServer) -> None:
    client = make_client(_url(no_hello.port))
    try:
        with pytest.raises(redis.exceptions.RedisError) as raised:
            client.ping()
        _check(raised.value)
    finally:
        client.close()


def test_a_raw_call_of_the_asyncio_client_never_shows_the_password(
    no_hello: RedisServer,
) -> None:
    async def main() -> BaseException:
        client = make_async_client(_url(no_hello.port))
        try:
            with pytest.raises(redis.exceptions.RedisError) as raised:
                await client.ping()
            return raised.value
        finally:
            await client.aclose()

    _check(asyncio.run(main()))
