"""Deleting every key under a prefix: what ``brokerkit check`` and ``brokerkit bench``
leave under their scratch prefix, and what a contract test run from a URL leaves
under its own."""

from __future__ import annotations

import dataclasses

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._options import RedisOptions

__all__ = ["unlink_prefixed"]

_GLOB = frozenset("*?[]\\")


def unlink_prefixed(url: BrokerURL, prefix: str) -> int:
    """Delete every key whose name starts with ``prefix`` (taken as text, not as a
    pattern) on the Redis deployment of ``url``: one server, every master of a
    cluster, the master under Sentinel. A SCAN, then UNLINK 500 keys at a time;
    returns how many were removed. The client is built with the URL's options
    (``reconnect_timeout``: how long a cluster whose master fails over is waited for).

    :raises InvalidOption: an option of the URL that :class:`RedisOptions` refuses.
    """
    from brokerkit.backends.redis._client import make_client

    pattern = "".join(f"\\{c}" if c in _GLOB else c for c in prefix) + "*"
    client = make_client(url, _options(url))
    removed = 0
    try:
        batch: list[bytes] = []
        # a cluster client scans every master and unlinks slot by slot
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 500:
                removed += int(client.unlink(*batch))
                batch.clear()
        if batch:
            removed += int(client.unlink(*batch))
    finally:
        client.close()
    return removed


_OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(RedisOptions))


def _options(url: BrokerURL) -> RedisOptions:
    """The options of ``url``'s query that every Redis backend reads (the others, a
    backend's own, are not needed here)."""
    query = {key: value for key, value in url.query.items() if key in _OPTION_NAMES}
    return RedisOptions.build(query, {}, backend=url.scheme)
