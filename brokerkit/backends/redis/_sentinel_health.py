"""Which sentinels of a URL failed when last asked, told once per change: a WARNING when
a sentinel goes bad (down, unreachable, refusing the credentials or the TLS
certificate, not a sentinel), an INFO when it is next seen answering, per sentinel
and per broker. A sentinel is asked at every lookup of the master (every new
connection) that the sentinels before it could not answer: during a failover, or while
it comes first. Logging each failure grew the log with the lookups. redis-py moves the
sentinel that answered to the front, so one that came back is asked again (and its
INFO logged) only once those before it fail: nothing here asks it sooner. No I/O of its
own."""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Awaitable
from typing import Any

import redis

from brokerkit._logging import log_fields
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import (
    CREDENTIAL_ERRORS,
    hide_credentials,
    tls_reached,
)
from brokerkit.backends.redis._refusals import tls_refusal

__all__ = ["SentinelHealth", "watch_sentinels"]

log = logging.getLogger("brokerkit.redis")

#: What redis-py's master lookup takes for a sentinel's failure (and asks the next).
_FAILURES = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError)


class SentinelHealth:
    """The sentinels of ``url`` that failed when last asked, and why. No WARNING shows
    the arguments a sentinel echoes, nor :attr:`password` (see
    :func:`~brokerkit.backends.redis._connection.hide_credentials`)."""

    def __init__(self, url: BrokerURL) -> None:
        self.url = url
        #: The sentinels' own password (``sentinel_password``, also given as a keyword).
        self.password: str | None = None
        self._bad: set[str] = set()
        self._lock = threading.Lock()

    def failed(self, where: str, exc: BaseException) -> None:
        """The sentinel at ``where`` (``host:port``) failed with ``exc``: a WARNING
        if it had not failed when last asked."""
        with self._lock:
            if where in self._bad:
                return
            self._bad.add(where)
        hide_credentials(exc, self.url, self.password)
        sentinel = f"the sentinel at {where} in {self.url}"
        tls = tls_refusal(str(exc), reached=tls_reached(self.url))
        if isinstance(exc, CREDENTIAL_ERRORS):
            what = (
                f"{sentinel} refused the credentials ({exc}); sentinel_password= and "
                "sentinel_username= are the sentinels' own"
            )
        elif tls is not None:
            what = f"{tls[0].format(sentinel)}: {exc}; {tls[1]}"
        elif isinstance(exc, redis.ResponseError):
            what = f"{sentinel} answered with an error (is it a sentinel?): {exc}"
        else:
            what = f"{sentinel} does not answer ({exc})"
        log.warning(
            "%s; the other sentinels are asked (told again when it is next seen answering)",
            what,
            extra=log_fields(),
        )

    def answered(self, where: str) -> None:
        """The sentinel at ``where`` answered: an INFO if it had failed when last asked."""
        with self._lock:
            if where not in self._bad:
                return
            self._bad.discard(where)
        log.info("the sentinel at %s in %s answers again", where, self.url, extra=log_fields())


#: A broker's health, by its options (every client of one broker is made with them).
_of_options: dict[int, SentinelHealth] = {}
_of_options_lock = threading.Lock()


def health_of(url: BrokerURL, options: object | None) -> SentinelHealth:
    """The :class:`SentinelHealth` of the broker whose ``options`` these are (a new one
    without them), kept as long as they are."""
    if options is None:
        return SentinelHealth(url)
    key = id(options)
    with _of_options_lock:  # two clients made at once share one (else each warns)
        health = _of_options.get(key)
        if health is None:
            health = _of_options[key] = SentinelHealth(url)
            health.password = getattr(options, "sentinel_password", None)
            weakref.finalize(options, _of_options.pop, key, None)
    return health


def watch_sentinels(sentinels: Any, url: BrokerURL, options: object | None) -> None:
    """Tell the broker's :class:`SentinelHealth` what each sentinel of redis-py's
    ``Sentinel`` (sync or asyncio) answers when the master is looked up."""
    health = health_of(url, options)
    for client in sentinels.sentinels:
        kwargs = client.connection_pool.connection_kwargs
        where = f"{kwargs.get('host')}:{kwargs.get('port')}"
        client.sentinel_masters = _watched(client.sentinel_masters, where, health)


def _watched(ask: Any, where: str, health: SentinelHealth) -> Any:
    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            result = ask(*args, **kwargs)
        except _FAILURES as exc:
            health.failed(where, exc)
            raise
        if inspect.isawaitable(result):
            return _awaited(result, where, health)
        health.answered(where)
        return result

    return watched


async def _awaited(result: Awaitable[Any], where: str, health: SentinelHealth) -> Any:
    try:
        answer = await result
    except _FAILURES as exc:
        health.failed(where, exc)
        raise
    health.answered(where)
    return answer
