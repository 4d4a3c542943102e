"""Keys that ``brokerkit check`` and ``brokerkit bench`` write, and removing them after.

Each run works under a prefix of its own that names the command that made it
(``brokerkit-check-<run>``, ``brokerkit-bench-<run>``), so that a key left by an
interrupted run says where it came from, and the run deletes every key under it
when it ends. ``check`` works under such a prefix on every backend that takes one
(what it makes off Redis is deleted by :mod:`brokerkit.cli._check_cleanup`).
"""

from __future__ import annotations

import dataclasses
import secrets
import shlex
from collections.abc import Iterator
from contextlib import contextmanager

from brokerkit._url import BrokerURL
from brokerkit.cli._output import cell, err

__all__ = ["remove_keys", "say_left", "scratch", "scratch_prefix", "takes_prefix"]


def scratch_prefix(command: str) -> str:
    """A fresh prefix naming ``command``: ``brokerkit-check-1a2b3c4d``."""
    return f"brokerkit-{command}-{secrets.token_hex(4)}"


def _is_redis(url: BrokerURL) -> bool:
    return url.family in ("redis", "rediss")


def takes_prefix(url: BrokerURL) -> bool:
    """Whether the backend of ``url`` has a ``prefix`` option (False where it cannot
    be loaded: connecting reports that)."""
    from brokerkit._plugins import backend_for

    try:
        options = backend_for(url)[1].load().Options
    except Exception:
        return False
    return dataclasses.is_dataclass(options) and any(
        field.name == "prefix" for field in dataclasses.fields(options)
    )


@contextmanager
def scratch(
    url: str, command: str, *, every_backend: bool = False
) -> Iterator[tuple[BrokerURL, str | None]]:
    """``url`` moved under a fresh prefix naming ``command``, and that prefix; on Redis
    every key under it is deleted on the way out, even after an error or Ctrl-C. A URL
    of another backend is given back as it is, with ``None``; with ``every_backend``,
    one whose backend has a ``prefix`` option is moved too (deleting what is made
    there is the caller's), and only one without (memory://, some plugins) is given
    back as it is.
    """
    parsed = BrokerURL.parse(url)
    if not _is_redis(parsed) and not (every_backend and takes_prefix(parsed)):
        yield parsed, None
        return
    prefix = scratch_prefix(command)
    moved = dataclasses.replace(parsed, query={**parsed.query, "prefix": prefix})
    if not _is_redis(parsed):
        yield moved, prefix
        return
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


#: How to remove, by hand, what ``bench`` or ``check`` could not delete.
_REMOVE_HINTS = {
    "kombu": "rabbitmqctl delete_queue NAME; rabbitmqadmin delete exchange name=NAME",
    "nats": "nats consumer rm STREAM NAME; nats stream rm NAME",
}


def say_left(command: str, left: list[str], url: BrokerURL) -> None:
    """Name on stderr, one a line, what a run of ``command`` made and could not delete."""
    if not left:
        return
    hint = _REMOVE_HINTS.get(url.scheme.split("+", 1)[0])
    err.print(
        cell(
            f"{command} left {len(left)} thing{'s' * (len(left) != 1)} on {url}, which it "
            "could not delete" + (f" (remove them with: {hint})" if hint else "") + ":",
            err,
        )
    )
    for line in left:
        err.print(cell(f"  {line}", err))
