"""What every Redis backend needs of its connection: the plain URL for redis-py, the
errors worth retrying, and redis-py's errors mapped to brokerkit's. No I/O of its own
(:func:`build_cluster` waits between the attempts of the builder it is given, for the
sync client only)."""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis

from brokerkit._error_text import nothing_answered
from brokerkit._option_secrets import after_secrets
from brokerkit._secret_options import MASK, is_secret, mask_chain, mask_secrets
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._options import DRIVER_QUERY_KEYS, redis_database
from brokerkit.backends.redis._plain_port import spoke_tls
from brokerkit.backends.redis._refusals import tls_refusal
from brokerkit.backends.redis._tls import shared_context_class
from brokerkit.exceptions import (
    BrokerError,
    ConfigurationError,
    ConnectionFailed,
    IncompatibleTopic,
    PermissionDenied,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "CREDENTIAL_ERRORS",
    "TOPOLOGY_ERRORS",
    "TRANSIENT_ERRORS",
    "AsyncClusterBuilder",
    "ClusterBuilder",
    "backoff_delay",
    "build_cluster",
    "cluster_failure",
    "connection_kwargs",
    "ever_reached",
    "hide_credentials",
    "never_answered",
    "note_reached",
    "note_url_reached",
    "redis_url",
    "tls_reached",
    "translate_errors",
    "unpooled_connection",
]

#: Replies that mean the deployment's topology is changing under the command: a slot
#: moved or is moving (``MOVED``, ``ASK``), a slot is being migrated (``TRYAGAIN``),
#: the cluster lost a master and has not promoted its replica yet (``CLUSTERDOWN``),
#: or the server was a master and is a replica now (``READONLY``, after a failover).
#: A cluster client follows ``MOVED``/``ASK`` and repeats ``TRYAGAIN`` itself, 16 times
#: in about 0.4 s, then raises ``ClusterError("TTL exhausted.")``: while a slot is half
#: migrated, a command on keys of both sides is refused until the migration ends.
#: None of them means the command ran: it is retried once the topology settles.
TOPOLOGY_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.AskError,  # MovedError is one
    redis.exceptions.TryAgainError,
    # Only "TTL exhausted." is raised as a plain ClusterError (redis-py 8.2); its
    # subclass ClusterDownError (and MasterDownError) is CLUSTERDOWN. A CROSSSLOT reply,
    # a usage error, is a ResponseError, never caught here.
    redis.exceptions.ClusterError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.SlotNotCoveredError,
)

#: The server refused the credentials (``WRONGPASS``, ``NOAUTH``, a password given to a
#: server without one, an ``AUTH`` it does not take): never retried. redis-py makes
#: :class:`redis.AuthenticationError` a ``ConnectionError``, so it is told apart first.
CREDENTIAL_ERRORS: tuple[type[Exception], ...] = (
    redis.AuthenticationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
)

#: Errors after which trying again may succeed. A missing script means the server
#: restarted between redis-py loading a script and running it; the next call loads it.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.NoScriptError,
    *TOPOLOGY_ERRORS,
)


log = logging.getLogger("brokerkit.redis")

#: Seconds a connection attempt may take unless the URL sets socket_connect_timeout:
#: a host that does not answer is given up on this soon.
CONNECT_TIMEOUT = 5.0

#: The (host, port) of every Redis this process has connected to. A server that has
#: answered before is ridden out through a restart (``reconnect_timeout``); one that
#: never has is reported at once as "could not connect".
_reached: set[tuple[str, int]] = set()


def note_reached(host: str, port: int) -> None:
    """A connection to ``host:port`` was made (called by every new connection)."""
    _reached.add((host, int(port)))


#: The host lists of the cluster and Sentinel URLs whose deployment has answered.
_reached_deployments: set[tuple[tuple[str, int | None], ...]] = set()


def note_url_reached(url: BrokerURL) -> None:
    """A command through ``url``'s client succeeded (for a cluster or a Sentinel set,
    whose nodes are found at run time, not named in the URL)."""
    _reached_deployments.add(url.hosts)


def ever_reached(url: BrokerURL) -> bool:
    """Whether this process has ever connected to the Redis that ``url`` names."""
    if url.hosts in _reached_deployments:
        return True
    return (url.host or "localhost", 6379 if url.port is None else url.port) in _reached


def tls_reached(url: BrokerURL) -> bool:
    """Whether this process has shaken TLS hands with a host of ``url`` (at the port it
    names, 6379 where it names none): what :func:`._refusals.tls_refusal` goes by for
    an error that names no server. (Not :func:`ever_reached`, which a ``redis+`` URL of
    the same plain ports also makes.)"""
    return any(
        spoke_tls(host or "localhost", 6379 if port is None else port) for host, port in url.hosts
    )


def never_answered(url: BrokerURL, exc: BaseException) -> bool:
    """Whether ``exc`` (a :class:`ConnectionFailed` from :func:`translate_errors`) says
    that nothing answered at ``url``, which this process has never reached: "could not
    connect", with no restart to ride out. A topology change (a slot on the move) is not
    that: the deployment answered."""
    cause = exc.__cause__
    unreachable = isinstance(cause, (redis.ConnectionError, redis.TimeoutError)) or (
        # "cannot be connected": no seed of a cluster answered
        isinstance(cause, redis.exceptions.RedisClusterException)
        and not isinstance(cause, redis.exceptions.SlotNotCoveredError)
    )
    return unreachable and not ever_reached(url)


_T = TypeVar("_T")

#: The largest exponent of :func:`backoff_delay`: ``2**attempt`` of a float overflows
#: past 1023 (an outage of some 17 minutes at a cap of 2 s), and any base worth
#: waiting at has reached its cap long before 2**32.
_MAX_BACKOFF_EXPONENT = 32


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """The wait before retry ``attempt`` (1, 2, ...): exponential backoff with full
    jitter, ``uniform(0, min(cap, base * 2**attempt))``, for any number of attempts."""
    return random.uniform(0, min(cap, base * 2.0 ** min(attempt, _MAX_BACKOFF_EXPONENT)))


def build_cluster(build: Callable[[], _T], url: BrokerURL, timeout: float) -> _T:
    """``build()``: a cluster client, built again, with backoff and jitter, for up to
    ``timeout`` seconds while a node of the cluster does not answer.

    redis-py's sync ``RedisCluster`` asks a seed for the slot map when it is built, then
    the map's first master for its commands (``COMMAND``). A seed that answered (else
    "cannot be connected", raised at once) and a master that does not is a master that
    failed and is being replaced (its replica promoted after ``cluster-node-timeout``):
    the deployment was reached, and a process that starts then rides the failover out
    as a running one does, instead of failing (with redis-py's own error) at once.
    redis.asyncio's client asks nothing when it is built (:class:`AsyncClusterBuilder`
    builds it once, with no wait on the event loop).

    :raises redis.ConnectionError: (or ``TimeoutError``) still after ``timeout``; at
        once when the credentials or a TLS certificate (a node's, or this client's) were
        refused: waiting will not change them.
    """
    give_up_at = time.monotonic() + timeout
    attempt = 0
    while True:
        try:
            return build()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if (
                isinstance(exc, CREDENTIAL_ERRORS)
                or tls_refusal(str(exc), reached=tls_reached(url)) is not None
            ):
                raise
            note_url_reached(url)  # a seed told the slots: the cluster answered
            attempt += 1
            delay = backoff_delay(attempt, 0.05, 2.0)
            if time.monotonic() + delay > give_up_at:
                raise
            time.sleep(delay)


class ClusterBuilder:
    """How the sync client (:mod:`._client`) builds a cluster client: with
    :func:`build_cluster`, which asks the nodes, and waits between its attempts."""

    build = staticmethod(build_cluster)


class AsyncClusterBuilder:
    """How the asyncio client (:mod:`._client_async`) builds a cluster client:
    ``build()``, once. redis.asyncio's ``RedisCluster`` does no I/O when it is built
    (it asks the seeds on its first command, which the backends retry), so there is
    nothing to wait for, and :func:`build_cluster`'s ``time.sleep`` would block the
    event loop."""

    @staticmethod
    def build(build: Callable[[], _T], url: BrokerURL, timeout: float) -> _T:
        del url, timeout  # (the sync twin's)
        return build()


def unpooled_connection(pool: Any) -> Any:
    """A new connection made as ``pool`` makes them (address, credentials, TLS, the
    Sentinel master lookup) that ``pool`` does not count: a connection its owner keeps
    and closes itself (a subscription's, the publishing one) never takes a slot of the
    URL's ``max_connections``, nor, with redis-py's sync pool, one that is never given
    back. No I/O: the connection connects on first use. A TLS connection is
    brokerkit's (:mod:`._tls`) even where the pool's is redis-py's own."""
    return shared_context_class(pool.connection_class)(**pool.connection_kwargs)


def redis_url(url: BrokerURL, *, hide_password: bool = False) -> str:
    """The plain ``redis://`` (or ``rediss://``) URL redis-py understands: brokerkit's
    own options removed, redis-py's connection arguments kept."""
    tls = url.scheme.startswith("rediss")
    database = redis_database(url)  # one integer, or InvalidURL
    driver_query = {k: v for k, v in url.query.items() if k in DRIVER_QUERY_KEYS and k != "db"}
    plain = BrokerURL(
        scheme="rediss" if tls else "redis",
        host=url.host or "localhost",
        port=6379 if url.port is None else url.port,
        username=url.username,
        password=url.password,
        path=f"/{database}",
        query=driver_query,
    )
    return plain.render(hide_password=hide_password)


def connection_kwargs(url: BrokerURL) -> dict[str, Any]:
    """redis-py's connection arguments for the servers ``url`` reaches, without the
    host: credentials, database, socket and TLS settings (``ssl=True`` for rediss)."""
    kwargs: dict[str, Any] = dict(redis.connection.parse_url(redis_url(url)))  # type: ignore[no-untyped-call]
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    if kwargs.pop("connection_class", None) is redis.SSLConnection:
        kwargs["ssl"] = True
    return kwargs


#: What Redis echoes of a command it does not know, its first arguments ("unknown
#: command 'HELLO', with args beginning with: '3' 'AUTH' 'default' '<password>'"), up
#: to the end of the text or of one sentinel's part of redis-py's "No master found".
_ECHOED_ARGUMENTS = re.compile(
    r"(with args beginning with:).*?(?=['\"]?\)?(?:, <redis\.|\Z))", re.DOTALL
)


def hide_credentials(error: BaseException, url: BrokerURL, *more: str | None) -> None:
    """Mask, in place, what ``error`` and every error of its chain may say of the
    credentials: the arguments a server echoes of a command it does not know (a
    server without ``HELLO`` given ``protocol=3``, or without ``AUTH``, echoes the
    password), shown as ``***``; and the URL's password, the values of its secret
    options (``sentinel_password=``) and ``more`` (the sentinels' password given as a
    keyword), wherever they are (see :func:`~brokerkit._secret_options.mask_secrets`)."""
    secrets = [url.password, *(v for k, v in url.query.items() if is_secret(k)), *more]
    if url.username_is_secret:
        secrets.append(url.username)

    def mask(text: str) -> str:
        return _ECHOED_ARGUMENTS.sub(rf"\1 {MASK}", mask_secrets(text, secrets))

    mask_chain(error, mask)


@contextlib.contextmanager
def translate_errors(url: BrokerURL, topic: str | None = None) -> Iterator[None]:
    """Turn redis-py errors into brokerkit's, never showing the password (masked in
    the redis-py error too, kept as the cause: see :func:`hide_credentials`)."""
    try:
        try:
            yield
        except Exception as exc:
            hide_credentials(exc, url)
            raise
    except CREDENTIAL_ERRORS as exc:
        raise ConnectionFailed(f"Redis at {url} refused the credentials: {exc}") from exc
    except redis.exceptions.NoPermissionError as exc:
        raise _permission_denied(url, exc) from exc
    except redis.ConnectionError as exc:
        # First: redis-py's "No master found" quotes each sentinel's client in full.
        if type(exc).__name__ == "MasterNotFoundError":  # redis.sentinel's or redis.asyncio's
            error, cause = _no_master(url, exc)
            raise error from cause
        refused = tls_refusal(str(exc), reached=tls_reached(url))
        if refused is not None:
            what, hint = refused
            raise ConfigurationError(f"{what.format(f'Redis at {url}')}: {exc}; {hint}") from exc
        raise _lost(url, exc) from exc
    except redis.exceptions.NoScriptError as exc:
        raise ConnectionFailed(
            f"Redis at {url} lost brokerkit's scripts (did it restart?): {exc}"
        ) from exc
    except TOPOLOGY_ERRORS as exc:
        raise ConnectionFailed(
            f"the Redis deployment at {url} was changing its topology (a failover or a "
            f"slot migration) and did not settle in time: {exc}"
        ) from exc
    except TRANSIENT_ERRORS as exc:
        raise _lost(url, exc) from exc
    except redis.ResponseError as exc:
        if _NOPERM.search(str(exc)):
            raise _permission_denied(url, exc) from exc
        if str(exc).startswith("WRONGTYPE"):
            what = f"the topic {topic!r}" if topic else "a key"
            raise IncompatibleTopic(
                f"{what} at {url} is stored in a Redis key of another type (maybe written "
                "by another program or another brokerkit backend); use another topic or prefix"
            ) from exc
        raise BrokerError(f"Redis at {url} answered with an error: {exc}") from exc
    except redis.RedisError as exc:
        raise BrokerError(f"Redis at {url} failed: {exc}") from exc
    except redis.exceptions.RedisClusterException as exc:
        raise cluster_failure(url, exc, "could not be used") from exc


def cluster_failure(url: BrokerURL, exc: Exception, what: str) -> BrokerError:
    """The error for redis-py's ``RedisClusterException`` (no seed could be used):
    :class:`PermissionDenied` naming the command when an ACL refused one of those the
    cluster client sends as it starts (``CLUSTER SLOTS``, ``COMMAND``), which redis-py
    reports as "Cluster mode is not enabled on this node" (the refusal is in the chain);
    a :class:`ConfigurationError` when TLS refused a certificate (the server's or this
    client's: the seeds share the URL's TLS options, and waiting will not change it),
    else :class:`ConnectionFailed` ("the Redis Cluster at ... <what>")."""
    hide_credentials(exc, url)
    denied = _refusal_in_chain(exc)
    if denied is not None:
        # redis-py words a seed's refused CLUSTER SLOTS "Cluster mode is not enabled"
        return _permission_denied(url, denied)
    tls = tls_refusal(str(exc), reached=tls_reached(url))
    if tls is not None:
        refused, hint = tls
        where = f"a node of the Redis Cluster at {url}"
        return ConfigurationError(f"{refused.format(where)}: {exc}; {hint}")
    return ConnectionFailed(f"the Redis Cluster at {url} {what}: {exc}")


#: How Redis says that an ACL refused a command, also from inside a script.
_NOPERM = re.compile(r"NOPERM|no permissions to (?:run|access)|can't run this command")
_COMMAND = re.compile(r"run the '([\w|]+)' command")


def _refusal_in_chain(exc: BaseException) -> BaseException | None:
    """The ACL refusal (``NOPERM``) among ``exc``'s causes and contexts, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, redis.exceptions.NoPermissionError) or (
            isinstance(current, redis.ResponseError) and _NOPERM.search(str(current))
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def _permission_denied(url: BrokerURL, exc: BaseException) -> PermissionDenied:
    found = _COMMAND.search(str(exc))
    command = found.group(1).upper() if found else None
    what = f"the {command} command" if command else "a command, key or channel"
    return PermissionDenied(
        f"Redis at {url} refused {what} to this user: {exc}; grant it in the user's ACL "
        "(docs/security.md lists what each backend needs)",
        command=command,
    )


#: A connection error that says nothing listens (or the host is unknown), not that
#: something there ended the connection.
_NOT_LISTENING = re.compile(
    r"Connection refused|Connect call failed|Name or service not known|nodename nor servname|"
    r"Temporary failure in name resolution|No address associated|No route to host"
)


def _lost(url: BrokerURL, exc: Exception | str) -> ConnectionFailed:
    if isinstance(exc, Exception):
        hide_credentials(exc, url)
    if ever_reached(url):
        return ConnectionFailed(f"lost the connection to Redis at {url}: {exc}")
    if _NOT_LISTENING.search(str(exc)):
        tls = ""  # nothing there to speak TLS or not
    elif url.scheme.startswith("rediss"):
        # A TLS 1.3 server that wants a client certificate checks it after the
        # handshake, and may end the connection without an alert the client reads.
        tls = (
            "; over TLS, also that the port speaks TLS and whether the server wants a client "
            "certificate (ssl_certfile=/path/to/client.pem, ssl_keyfile=/path/to/client.key)"
        )
    else:
        tls = "; a port that speaks TLS only wants a rediss+ URL"
    return ConnectionFailed(nothing_answered("Redis", url, exc) + tls)


#: One sentinel's failure in redis-py's "No master found" message: the sentinel's
#: client (a long repr, whose ``host=...,port=...`` is kept), `` - ``, and the error,
#: ``auth:AuthenticationError: <reply>`` (redis-py 8) or ``AuthenticationError('<reply>')``.
_SENTINEL_FAILURE = re.compile(
    r"host=(?P<host>[^,]*),port=(?P<port>\d+).*?\)> - (?:\w+:)?(?P<kind>\w+)"
    r"(?:: (?P<text>.*?)|\((?P<quoted>.*?)\))?(?=, <redis\.|\Z)",
    re.DOTALL,
)
_NOT_A_SENTINEL = re.compile(r"unknown command [`']sentinel[`']", re.IGNORECASE)
_SERVICE = re.compile(r"No master found for (?P<name>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")
_REFUSALS = frozenset(error.__name__ for error in CREDENTIAL_ERRORS)


def _mask_master(message: str, name: str) -> str:
    """``message`` (redis-py's "No master found for <name>: ...") without the master's
    ``name``: exactly as redis-py quotes it (``repr``, escapes and all), or in plain
    quotes, then anything the pattern of a quoted name still finds after the phrase."""
    for quoted in (repr(name), f"'{name}'", f'"{name}"'):
        message = message.replace(
            f"No master found for {quoted}", "No master found for sentinel=***"
        )
    return _SERVICE.sub("No master found for sentinel=***", message)


def _no_master(url: BrokerURL, exc: Exception) -> tuple[BrokerError, BaseException]:
    """The error for redis-py's ``MasterNotFoundError`` (no sentinel named a master that
    is up), and its cause, told apart by what the sentinels answered: refused
    credentials (caused by a :class:`redis.AuthenticationError`, so never retried) or a
    TLS certificate that was not accepted, theirs or this client's (a
    :class:`ConfigurationError`), when every host of the URL said so (else the others'
    answer, a master that is not up yet during a failover, is waited for as ever; the
    sentinel that failed is logged once, by :mod:`._sentinel_health`); a server that
    is not a sentinel (a :class:`ConfigurationError` when no host of the URL is one:
    nothing to wait for);
    nothing at all; or no master of that name. The sentinels' clients, which redis-py's
    message shows in full, are left out.

    When ``sentinel=`` follows a secret of the URL's query, ``exc`` itself is masked
    (its message no longer names the master): it is the context of what is raised."""
    message = str(exc)
    found = _SERVICE.search(message)
    master = found.group("name") if found else "of that name"
    follows = after_secrets(url.query).get("sentinel")
    if follows:
        # sentinel= may be the end of the secret before it (split at a raw '&'):
        # neither this message nor its cause (nor its context) may quote it
        master = f"named by sentinel= (not quoted: it follows {follows}=)"
        hidden = _mask_master(message, url.query["sentinel"])
        exc.args = (hidden,)  # in place: the exception being handled is the context
        message = hidden
    failures = [
        (
            f"{m.group('host')}:{m.group('port')}",
            m.group("kind"),
            (m.group("text") or m.group("quoted") or "").strip(" '\""),
        )
        for m in _SENTINEL_FAILURE.finditer(message)
    ]
    refusals = [(where, text) for where, kind, text in failures if kind in _REFUSALS]
    reached = tls_reached(url)
    refused = "; ".join(f"{where}: {text}" for where, text in refusals)
    tls_refusals = [
        (where, text, tls)
        for where, kind, text in failures
        if kind not in _REFUSALS and (tls := tls_refusal(text, reached=reached)) is not None
    ]
    if len(refusals) + len(tls_refusals) >= len(url.hosts):  # no sentinel to wait for
        if refused:
            refusal = redis.AuthenticationError(refused)
            refusal.__cause__ = exc
            return ConnectionFailed(
                f"the sentinels at {url} refused the credentials ({refused}); "
                "sentinel_password= (with sentinel_username= for an ACL user) is the "
                "sentinels' own password, the URL's user name and password are the master's"
            ), refusal
        for where, text, (what, hint) in tls_refusals:  # they share the TLS options
            sentinel = f"the sentinel at {where} in {url}"
            return ConfigurationError(f"{what.format(sentinel)}: {text}; {hint}"), exc
    strangers = [where for where, _, text in failures if _NOT_A_SENTINEL.search(text)]
    if strangers:
        what = "is not a sentinel" if len(strangers) == 1 else "are not sentinels"
        message = (
            f"{', '.join(strangers)} in {url} {what} (unknown command 'SENTINEL'): a URL "
            "with sentinel= lists the sentinels (port 26379 by default), not the Redis "
            "servers they watch"
        )
        if len(strangers) < len(url.hosts):  # another host may be a sentinel, down for now
            return ConnectionFailed(message), exc
        return ConfigurationError(message), exc
    detail = "; ".join(f"{where}: {text or kind}" for where, kind, text in failures)
    if len(failures) >= len(url.hosts):
        return _lost(url, f"no sentinel answered: {detail}"), exc
    unreached = f" ({detail})" if detail else ""
    if ever_reached(url):
        return _lost(url, f"the sentinels name no master {master} that is up{unreached}"), exc
    return ConnectionFailed(
        f"the sentinels at {url} know no master {master} that is up{unreached}: check that "
        "sentinel= is the name in their 'sentinel monitor' line and that the master runs"
    ), exc
