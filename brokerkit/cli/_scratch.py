"""Keys that ``brokerkit check`` and ``brokerkit bench`` write, and removing them after.

Each run works under a prefix of its own that names the command that made it
(``brokerkit-check-<run>``, ``brokerkit-bench-<run>``), so that a key left by an
interrupted run says where it came from, and the run deletes every key under it
when it ends.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from brokerkit._url import BrokerURL
from brokerkit.cli._output import err

__all__ = ["remove_keys", "scratch", "scratch_prefix"]

#: Options that make a Redis URL name several servers: cleaned up by hand.
_TOPOLOGY_OPTIONS = ("cluster", "sentinel")


def scratch_prefix(command: str) -> str:
    """A fresh prefix naming ``command``: ``brokerkit-check-1a2b3c4d``."""
    return f"brokerkit-{command}-{secrets.token_hex(4)}"


def _is_redis(url: BrokerURL) -> bool:
    return url.family in ("redis", "rediss")


@contextmanager
def scratch(url: str, command: str) -> Iterator[tuple[BrokerURL, str | None]]:
    """``url`` moved under a fresh prefix naming ``command``, and that prefix; every key
    under it is deleted on the way out, even after an error or Ctrl-C. A URL of a
    backend without prefixes (memory://, plugins) is given back as it is, with ``None``.
    """
    parsed = BrokerURL.parse(url)
    if not _is_redis(parsed):
        yield parsed, None
        return
    prefix = scratch_prefix(command)
    moved = dataclasses.replace(parsed, query={**parsed.query, "prefix": prefix})
    try:
        yield moved, prefix
    finally:
        remove_keys(moved, prefix)


def remove_keys(url: BrokerURL, prefix: str) -> int:
    """Delete every key whose name starts with ``prefix`` on the Redis server of ``url``;
    return how many.

    Never raises: a key that could not be removed is reported on stderr with the
    command that removes it.
    """
    hint = f"remove them with: redis-cli --scan --pattern '{prefix}*' | xargs redis-cli unlink"
    if any(option in url.query for option in _TOPOLOGY_OPTIONS):
        err.print(f"keys under {prefix!r} are left on a cluster or sentinel setup; {hint}")
        return 0
    try:
        import redis

        client = redis.Redis(
            host=url.host or "localhost",
            port=url.port or 6379,
            db=int(url.path.strip("/") or 0),
            username=url.username,
            password=url.password,
            ssl=url.scheme.startswith("rediss"),
            socket_timeout=10,
        )
        removed = 0
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) == 500:
                    removed += int(client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(client.unlink(*batch))
        finally:
            client.close()
        return removed
    except Exception as exc:
        err.print(f"could not remove the keys under {prefix!r} ({type(exc).__name__}); {hint}")
        return 0
