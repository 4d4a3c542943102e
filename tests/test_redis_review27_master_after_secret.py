"""A Sentinel URL whose ``sentinel=`` (the master's name) comes after a secret query
option: ``sentinel_password=Tr0ub&sentinel=3xTAIL`` may be one password written with a
raw '&', so no message may quote what follows it. When the sentinels know no master
of that name, the error named it ("know no master '3xTAIL'") and its cause, redis-py's
MasterNotFoundError, did too; both now leave it out. Real sentinels (the session's
set), no mock."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.exceptions import BrokerError
from tests.redis_cluster import SentinelSet


def _chain(error: BaseException) -> str:
    """The text of ``error`` and of every exception it was raised from or in."""
    texts = []
    seen: BaseException | None = error
    while seen is not None:
        texts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


@pytest.mark.parametrize("scheme", ["redis+stream", "redis+list"])
def test_a_master_name_after_a_secret_is_not_quoted(
    redis_sentinel: SentinelSet, scheme: str
) -> None:
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in redis_sentinel.sentinels)
    url = f"{scheme}://{hosts}/0?sentinel_password=Tr0ub&sentinel=3xTAIL"
    with pytest.raises(BrokerError) as raised:
        with brokerkit.connect(url, reconnect_timeout=0) as broker:
            broker.publish("t", b"x")
    text = _chain(raised.value)
    assert "3xTAIL" not in text, text
    assert "Tr0ub" not in text, text
    assert "master" in str(raised.value), text


def test_a_master_name_before_the_secret_is_still_named(redis_sentinel: SentinelSet) -> None:
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in redis_sentinel.sentinels)
    url = f"redis+stream://{hosts}/0?sentinel=nosuchmaster&sentinel_password=Tr0ub"
    with pytest.raises(BrokerError) as raised:
        with brokerkit.connect(url, reconnect_timeout=0) as broker:
            broker.publish("t", b"x")
    assert "nosuchmaster" in str(raised.value)
