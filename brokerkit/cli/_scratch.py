"""Keys that ``brokerkit check`` and ``brokerkit bench`` write, and removing them after.

Each run works under a prefix of its own that names the command that made it
(``brokerkit-check-<run>``, ``brokerkit-bench-<run>``), so that a key left by an
interrupted run says where it came from, and the run deletes every key under it
when it ends.
"""

from __future__ import annotations

import dataclasses
import secrets
import shlex
from collections.abc import Iterator
from contextlib import contextmanager

from brokerkit._url import BrokerURL
from brokerkit.cli._output import err

__all__ = ["remove_keys", "scratch", "scratch_prefix"]


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
    """Delete every key whose name starts with ``prefix`` on the Redis deployment of
    ``url`` (one server; every master of a cluster; the master under Sentinel); return
    how many.

    Never raises: a key that could not be removed is reported on stderr with the
    command that removes it.
    """
    cli = _redis_cli(url)
    # redis-cli reads a password from REDISCLI_AUTH (--askpass would read xargs's stdin)
    auth = ", REDISCLI_AUTH set to the password," if url.password is not None else ""
    hint = f"remove them{auth} with: {cli} --scan --pattern '{prefix}*' | xargs {cli} unlink"
    if url.query.get("sentinel"):
        hint += " (on the master the Sentinels name)"
    elif url.query.get("cluster", "").lower() in ("1", "true", "yes", "on"):
        hint += " (on each master of the cluster)"
    try:
        from brokerkit.backends.redis._unlink import unlink_prefixed

        return unlink_prefixed(url, prefix)
    except Exception as exc:
        # as written: a user name in the command may read as rich markup ("[bold]")
        err.print(
            f"could not remove the keys under {prefix!r} ({type(exc).__name__}); {hint}",
            markup=False,
        )
        return 0


def _redis_cli(url: BrokerURL) -> str:
    """``redis-cli`` with the options that reach the server of ``url`` (its first host,
    database, TLS, ACL user): a bare ``redis-cli`` talks to localhost:6379, database 0.
    A password is never written out: the hint says to set ``REDISCLI_AUTH``."""
    path = url.path.strip("/")
    db = url.query.get("db") or (path if path.isdigit() else "0")
    words = ["redis-cli", "-h", url.host or "localhost", "-p", str(url.port or 6379), "-n", db]
    if url.scheme.startswith("rediss"):
        words.append("--tls")
    if url.username:
        words += ["--user", url.username]
    return shlex.join(words)
