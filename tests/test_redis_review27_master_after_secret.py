"""A Sentinel URL whose ``sentinel=`` (the master's name) comes after a secret query
option: ``sentinel_password=Tr0ub&sentinel=3xTAIL`` may be one password written with a
raw '&', so no message may quote what follows it. When the sentinels know no master
of that name, the error named it ("know no master '3xTAIL'") and its cause, redis-py's
MasterNotFoundError, did too; both now leave it out. Real sentinels (the session's
set), no mock."""

from __future__ import annotations

import pytest

from brokerkit.exceptions import BrokerError
from tests.redis_cluster import SentinelSet
from tests.redis_server import publish_once


def _chain(error: BaseException) -> str:
    """The text of ``error`` and of every exception it was raised from or in: both
    ``__cause__`` and ``__context__`` of each, however deep."""
    texts = []
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        texts.append(f"{type(current).__name__}: {current!s} {current.args!r}")
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return "\n".join(texts)


def _url(sentinels: SentinelSet, query: str, scheme: str = "redis+stream") -> str:
    """A URL of the set's sentinels with the query ``query``, in that order."""
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels.sentinels)
    return f"{scheme}://{hosts}/0?{query}"


def _publish(api: str, url: str) -> None:
    publish_once(api, url, "t", b"x", reconnect_timeout=0)


@pytest.mark.parametrize("scheme", ["redis+stream", "redis+list"])
def test_a_master_name_after_a_secret_is_not_quoted(
    redis_sentinel: SentinelSet, scheme: str
) -> None:
    url = _url(redis_sentinel, "sentinel_password=Tr0ub&sentinel=3xTAIL", scheme)
    with pytest.raises(BrokerError) as raised:
        _publish("sync", url)
    text = _chain(raised.value)
    assert "3xTAIL" not in text, text
    assert "Tr0ub" not in text, text
    assert "master" in str(raised.value), text


@pytest.mark.parametrize("api", ["sync", "asyncio"])
def test_a_master_name_with_quotes_after_a_secret_is_not_quoted(
    redis_sentinel: SentinelSet, api: str
) -> None:
    """A name with both quotes (``x'Y"SECRETTAIL``), which redis-py's repr escapes
    (``'x\\'Y"SECRETTAIL'``): masked whole, and the unmasked MasterNotFoundError is
    neither the cause nor the context of what is raised."""
    url = _url(redis_sentinel, "sentinel_password=Tr0ub&sentinel=x%27Y%22SECRETTAIL")
    with pytest.raises(BrokerError) as raised:
        _publish(api, url)
    text = _chain(raised.value)
    assert "SECRETTAIL" not in text, text
    assert "Tr0ub" not in text, text
    assert "master" in str(raised.value), text


def test_a_master_name_before_the_secret_is_still_named(redis_sentinel: SentinelSet) -> None:
    url = _url(redis_sentinel, "sentinel=nosuchmaster&sentinel_password=Tr0ub")
    with pytest.raises(BrokerError) as raised:
        _publish("sync", url)
    assert "nosuchmaster" in str(raised.value)
