"""Outages of Redis, as the retry loops of a broker see them (:class:`._client_async.Reconnector`,
and redis+list's calls): each logged once as it begins, and once as it ends."""

from __future__ import annotations

import threading
import time

from brokerkit._logging import log_fields
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import TOPOLOGY_ERRORS, log
from brokerkit.exceptions import ConnectionFailed

__all__ = ["Outage", "outage_began", "outage_ended", "outage_left"]


class Outage:
    """An outage of one scope (a broker) under way: logged once as it began, and as it
    ended. It lives while a call of its scope that retried (:func:`outage_began`) is
    still in its retry loop, never longer: the last such call to leave ends it
    (:func:`outage_left`), whether it gave up, was ended by the broker's close or was
    cancelled, and any call of the scope that succeeds ends it at once
    (:func:`outage_ended`)."""

    __slots__ = ("began", "calls", "scope")

    def __init__(self, scope: object) -> None:
        #: The scope itself: kept, so that its id is not reused while the entry lives.
        self.scope = scope
        self.began = time.monotonic()
        #: The calls of the scope in their retry loops that joined it.
        self.calls = 0


#: The outages under way, by the id of their scope (a broker's close signal, which
#: every retry loop of the broker shares). Empty but during an outage: a call that
#: succeeds at once (redis+list's first attempt) looks no further than ``if
#: _outages``.
_outages: dict[int, Outage] = {}
_outages_lock = threading.Lock()


def outage_began(
    scope: object, url: BrokerURL, exc: ConnectionFailed, timeout: float, joined: Outage | None
) -> Outage:
    """A call of ``scope`` (a broker) lost Redis and retries, again: the outage it is
    part of (``joined``, when it still lasts; else the scope's under way, or a new one),
    which it leaves with :func:`outage_left`. One WARNING as an outage begins (what was
    lost and the error: ``exc``'s text, masked already by :func:`translate_errors`; for
    how long it retries), none for the other calls or retries of it. About the broker,
    not one topic: no topic in its fields."""
    with _outages_lock:
        current = _outages.get(id(scope))
        if joined is not None and joined is current:
            return joined
        if current is not None:
            current.calls += 1
            return current
        current = _outages[id(scope)] = Outage(scope)
        current.calls = 1
    cause = exc.__cause__
    if isinstance(cause, TOPOLOGY_ERRORS):  # (exc's text is for giving up)
        lost = (
            f"the Redis deployment at {url} is changing its topology (a failover or a slot "
            f"migration): {type(cause).__name__}: {cause}"
        )
    else:
        lost = str(exc).rstrip(".")
    log.warning(
        "%s; retrying for up to %g s (reconnect_timeout), and saying so when it answers again",
        lost,
        timeout,
        extra=log_fields(),
    )
    return current


def outage_ended(scope: object, url: BrokerURL) -> None:
    """A call of ``scope`` succeeded: if an outage of it is under way, one INFO that
    Redis answers again, after how long; else nothing (the common case: a look-up)."""
    if id(scope) not in _outages:
        return
    with _outages_lock:
        entry = _outages.get(id(scope))
        if entry is None or entry.scope is not scope:
            return
        del _outages[id(scope)]
    log.info(
        "Redis at %s answers again, after %.1f s away",
        url,
        time.monotonic() - entry.began,
        extra=log_fields(),
    )


def outage_left(outage: Outage, url: BrokerURL, *, gave_up: bool) -> None:
    """A call that joined ``outage`` (:func:`outage_began`) left its retry loop (its
    ``finally``): the last to leave ends the outage, if it still lasts. One INFO when
    that call ``gave_up`` (it raises :class:`ConnectionFailed` at its deadline): brokerkit
    stopped waiting, and the next call that loses Redis logs a new WARNING. A call ended
    by the broker's close (or cancelled) ends it unlogged."""
    with _outages_lock:
        outage.calls -= 1
        if outage.calls > 0 or _outages.get(id(outage.scope)) is not outage:
            return
        del _outages[id(outage.scope)]
    if gave_up:
        log.info(
            "gave up waiting for Redis at %s after %.1f s away (reconnect_timeout): the "
            "calls raised ConnectionFailed; the next call that loses it says so again",
            url,
            time.monotonic() - outage.began,
            extra=log_fields(),
        )
