"""Deleting every key under a prefix: what ``brokerkit check`` and ``brokerkit bench``
leave under their scratch prefix, and what a contract test run from a URL leaves
under its own."""

from __future__ import annotations

from brokerkit._url import BrokerURL

__all__ = ["unlink_prefixed"]

_GLOB = frozenset("*?[]\\")


def unlink_prefixed(url: BrokerURL, prefix: str) -> int:
    """Delete every key whose name starts with ``prefix`` (taken as text, not as a
    pattern) on the Redis deployment of ``url``: one server, every master of a
    cluster, the master under Sentinel. A SCAN, then UNLINK 500 keys at a time;
    returns how many were removed."""
    from brokerkit.backends.redis._client import make_client

    pattern = "".join(f"\\{c}" if c in _GLOB else c for c in prefix) + "*"
    client = make_client(url)
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
