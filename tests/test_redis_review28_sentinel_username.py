"""A Sentinel set whose sentinels want an ACL user (``user bk-sentinel on >pw ...`` in
sentinel.conf), as redis-py's ``Sentinel(sentinel_kwargs={"username": ..., "password":
...})`` reaches: ``sentinel_username=`` names that user beside ``sentinel_password=``.
There was no such option (an unknown option, refused by connect()). The user name is
not a secret (as the URL's own user name); the password stays masked."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import ConnectionFailed, InvalidOption
from tests.redis_cluster import _Sentinel
from tests.redis_server import RedisServer, wait_until

USER = "bk-sentinel"
PASSWORD = "s3nt-Us3r-Pw28"
NAME = "bk28user"


@pytest.fixture(scope="module")
def acl_sentinel() -> Iterator[_Sentinel]:
    """A sentinel whose default user is off: only ``USER`` with ``PASSWORD`` may talk
    to it (and ask what a client of a Sentinel set asks)."""
    with RedisServer() as master:
        sentinel = _Sentinel(NAME, master.port)
        sentinel.config.write_text(
            sentinel.config.read_text()
            + f"user default off\nuser {USER} on >{PASSWORD} allchannels +@all\n"
        )
        sentinel.start()
        client = redis.Redis(
            host="127.0.0.1", port=sentinel.port, username=USER, password=PASSWORD, socket_timeout=5
        )

        def names_the_master() -> bool:
            try:
                return client.sentinel_get_master_addr_by_name(NAME) is not None
            except redis.RedisError:
                return False

        try:
            wait_until(names_the_master, 20, "the ACL sentinel did not start")
            yield sentinel
        finally:
            client.close()
            sentinel.stop()


def _url(sentinel: _Sentinel, scheme: str, user: str | None, password: str) -> str:
    query = f"sentinel={NAME}&sentinel_password={password}"
    if user is not None:
        query += f"&sentinel_username={user}"
    return f"{scheme}://127.0.0.1:{sentinel.port}/0?{query}"


def _publish(api: str, url: str, prefix: str) -> None:
    if api == "sync":
        with brokerkit.connect(url, prefix=prefix) as broker:
            broker.publish("t", b"x")
            broker.purge("t")
        return

    async def main() -> None:
        async with await brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish("t", b"x")
            await broker.purge("t")

    asyncio.run(main())


@pytest.mark.parametrize("api", ["sync", "asyncio"])
@pytest.mark.parametrize("scheme", ["redis+stream", "redis+list", "redis+pubsub"])
def test_sentinel_username_reaches_sentinels_that_want_an_acl_user(
    acl_sentinel: _Sentinel, prefix: str, scheme: str, api: str
) -> None:
    _publish(api, _url(acl_sentinel, scheme, USER, PASSWORD), prefix)


@pytest.mark.parametrize("api", ["sync", "asyncio"])
def test_a_wrong_sentinel_password_for_the_user_is_refused_credentials(
    acl_sentinel: _Sentinel, prefix: str, api: str
) -> None:
    with pytest.raises(ConnectionFailed) as caught:
        _publish(api, _url(acl_sentinel, "redis+list", USER, "not-" + PASSWORD), prefix)
    message = str(caught.value)
    assert "refused the credentials" in message
    assert "sentinel_username=" in message  # the hint names both options
    assert PASSWORD not in message
    assert isinstance(caught.value.__cause__, redis.AuthenticationError)


def test_sentinel_username_is_shown_and_its_password_masked(acl_sentinel: _Sentinel) -> None:
    # (an option after a secret is masked with it: the user name comes first here)
    url = (
        f"redis+stream://127.0.0.1:{acl_sentinel.port}/0?sentinel={NAME}"
        f"&sentinel_username={USER}&sentinel_password={PASSWORD}"
    )
    with brokerkit.connect(url) as broker:
        shown = f"{broker!r} {broker.url!s} {broker.url!r}"
    assert PASSWORD not in shown
    assert f"sentinel_username={USER}" in str(broker.url)


@pytest.mark.parametrize(
    "query",
    ["sentinel_username=u", "sentinel=m&sentinel_username=u", "sentinel=m&sentinel_username="],
)
def test_sentinel_username_needs_sentinel_and_its_password(query: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        brokerkit.connect(f"redis+stream://127.0.0.1:26379/0?{query}")
    assert "sentinel_username" in str(caught.value)
