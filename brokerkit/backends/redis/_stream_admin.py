"""Group and log operations of the redis+stream backend that are not part of the
broker primitives: creating groups, reading the stream as a log."""

from __future__ import annotations

from typing import Any

import redis

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._client import translate_errors
from brokerkit.backends.redis._envelope import decode_fields
from brokerkit.backends.redis._stream_log import LogEntry, check_position
from brokerkit.backends.redis._stream_scripts import text
from brokerkit.exceptions import InvalidOption

__all__ = ["create_group", "last_id", "read_log"]


def create_group(client: redis.Redis, key: str, group: str, start: str) -> bool:
    """Create ``group`` at ``start`` (and the stream, if missing); return False if
    it existed already, which is fine: its position is kept."""
    try:
        client.xgroup_create(key, group, id=start, mkstream=True)
    except redis.ResponseError as exc:
        if str(exc).startswith("BUSYGROUP"):
            return False
        raise
    return True


def last_id(client: Any, key: str) -> str:
    """The id of the newest entry of ``key``, or ``0-0`` when there is none."""
    newest = client.xrevrange(key, "+", "-", count=1)
    return text(newest[0][0]) if newest else "0-0"


def read_log(
    client: Any,
    url: BrokerURL,
    key: str,
    topic: str,
    after: str,
    count: int,
    timeout: float | None,
    raw_content_type: str | None,
) -> list[LogEntry]:
    """Up to ``count`` entries after ``after`` (see ``RedisStreamBroker.read``)."""
    if after == "earliest":
        position = "0-0"
    elif after == "latest":
        position = "$"
    else:
        position = check_position(after, "after")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InvalidOption(f"count must be a whole number of 1 or more, got {count!r}")
    if timeout is not None and timeout < 0:
        raise InvalidOption(f"timeout must be 0 or more seconds (or None), got {timeout!r}")
    block = None if not timeout else max(1, int(timeout * 1000))
    with translate_errors(url, topic):
        reply = client.xread({key: position}, count=count, block=block)
    entries = reply[0][1] if reply else []
    return [
        LogEntry(text(entry_id), decode_fields(topic, dict(fields), raw_content_type))
        for entry_id, fields in entries
    ]
