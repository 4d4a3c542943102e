"""Options shared by the Redis backends, and the split between them and redis-py's.

redis-py's own connection arguments (``socket_timeout``, ``ssl_ca_certs``...) pass
through the URL's query string to the driver, which would read a bad one only when
it first connects, and then report "lost the connection". They are checked here, at
:func:`brokerkit.connect`, and refused with :class:`~brokerkit.InvalidOption`.
"""

from __future__ import annotations

import math
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from brokerkit._option_secrets import after_secrets, quoted_value, secret_tail_refusal
from brokerkit._options import MAX_SECONDS, BrokerOptions
from brokerkit._secret_options import secret_in
from brokerkit._url import BrokerURL
from brokerkit.exceptions import InvalidOption, InvalidURL

__all__ = [
    "DRIVER_QUERY_KEYS",
    "MAX_PAYLOAD_BYTES",
    "TLS_QUERY_KEYS",
    "RedisOptions",
    "check_driver_query",
    "redis_database",
]

_R = TypeVar("_R", bound="RedisOptions")

#: Query keys handed to redis-py as connection arguments, not read by brokerkit.
DRIVER_QUERY_KEYS = frozenset(
    {
        "db",
        "health_check_interval",
        "max_connections",
        "protocol",
        "retry_on_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_timeout",
        "client_name",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_min_version",
    }
)

#: Query keys that only mean something over TLS (``rediss+...://``).
TLS_QUERY_KEYS = frozenset(k for k in DRIVER_QUERY_KEYS if k.startswith("ssl_"))

#: The largest payload a Redis backend publishes: Redis stores at most 512 MB in one
#: value (``proto-max-bulk-len``), and the envelope and headers need room too.
MAX_PAYLOAD_BYTES = 512 * 1024 * 1024 - 1024 * 1024

_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: What Redis accepts in CLIENT SETNAME: no spaces, newlines or other special characters.
_CLIENT_NAME = re.compile(r"[!-~]{1,128}")
#: The largest db number and connection count: Redis's and redis-py's ints.
_MAX_INT = 2**31 - 1
_CERT_REQS = ("none", "optional", "required")


@dataclass(frozen=True)
class RedisOptions(BrokerOptions):
    """Options of every ``redis+...://`` URL, besides redis-py's own connection
    arguments (``socket_timeout``, ``health_check_interval``, ``ssl_cert_reqs``...),
    which pass through to the driver."""

    #: The first part of every key brokerkit writes: ``<prefix>:{<topic>}...``.
    prefix: str = "brokerkit"
    #: How long, in seconds, to keep retrying (with backoff and jitter) after the
    #: server goes away before giving up with ConnectionFailed.
    reconnect_timeout: float = 30.0
    #: Read the URL's hosts as seeds of a Redis Cluster (any node will do).
    cluster: bool = False
    #: Read the URL's hosts as sentinels and follow the master they know by this name.
    sentinel: str | None = None
    #: (an empty ``sentinel=`` is refused: see BrokerOptions)
    empty_refused: ClassVar[frozenset[str]] = frozenset({"sentinel", "sentinel_username"})
    #: The password of the sentinels themselves (the URL's password is the master's).
    sentinel_password: str | None = field(default=None, repr=False)
    #: The ACL user of the sentinels themselves, with ``sentinel_password`` (the URL's
    #: user name is the master's).
    sentinel_username: str | None = None
    #: Publish and ack wait until this many replicas have the write (Redis ``WAIT``);
    #: 0 (the default) returns as soon as the master has it.
    replicas: int = 0
    #: Seconds publish and ack wait for ``replicas`` before failing with
    #: :class:`~brokerkit.exceptions.ReplicationTimeout`.
    replica_timeout: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if _PREFIX.fullmatch(self.prefix) is None:
            raise InvalidOption(
                "prefix must be 1 to 64 of letters, digits and _ . : -, "
                f"got {quoted_value('prefix', self.prefix)}"
            )
        if self.cluster and self.sentinel is not None:
            raise InvalidOption(
                "cluster=true and sentinel= cannot be combined: a URL names either the "
                "seeds of a Redis Cluster or the sentinels of one master; give one"
            )
        if self.sentinel is not None and not self.sentinel.strip():
            raise InvalidOption("sentinel= must name the master the sentinels watch, got ''")
        if self.sentinel_password is not None and self.sentinel is None:
            raise InvalidOption(
                "sentinel_password only applies with sentinel=<master name>; add sentinel= "
                "or remove sentinel_password"
            )
        if self.sentinel_username is not None and self.sentinel is None:
            raise InvalidOption(
                "sentinel_username only applies with sentinel=<master name>; add sentinel= "
                "or remove sentinel_username"
            )
        if self.sentinel_username is not None and not self.sentinel_username:
            raise InvalidOption("sentinel_username= must name the sentinels' ACL user, got ''")
        if self.sentinel_username is not None and self.sentinel_password is None:
            raise InvalidOption(
                "sentinel_username needs sentinel_password: the sentinels' ACL user "
                "authenticates with the password given there"
            )
        if not 0 <= self.replicas <= 64:
            raise InvalidOption(
                f"replicas must be a whole number from 0 to 64, "
                f"got {quoted_value('replicas', self.replicas)}"
            )
        if not self.replica_timeout > 0:
            raise InvalidOption(
                "replica_timeout must be a positive number of seconds, "
                f"got {quoted_value('replica_timeout', self.replica_timeout)}"
            )

    @classmethod
    def build(
        cls: type[_R],
        query: Mapping[str, str],
        keywords: Mapping[str, Any],
        *,
        backend: str,
        ignore: frozenset[str] = frozenset(),
    ) -> _R:
        """As :meth:`BrokerOptions.build`, and the driver's query keys are checked too
        (see :func:`check_driver_query`)."""
        check_driver_query(query, backend)
        return super().build(query, keywords, backend=backend, ignore=ignore)


def check_driver_query(query: Mapping[str, str], backend: str) -> None:
    """Refuse a redis-py connection argument in ``query`` that the driver would refuse,
    misread or only fail on when it connects: a number that is not one (or NaN, or
    out of range), a boolean that is not ``true``/``false``, an unknown RESP
    ``protocol`` or ``ssl_cert_reqs``, a TLS version Python does not know, a CA,
    certificate or key file that cannot be read, a client name Redis would refuse.

    :raises InvalidOption: naming the key, what it got (unless it follows a secret in
        the query: it may be the end of that secret) and what is valid.
    """
    follows = after_secrets(query)
    for key, text in query.items():
        check = _DRIVER_CHECKS.get(key)
        if check is None:
            continue
        problem = check(text)
        if problem and key in follows:  # its name too may be part of the secret
            raise InvalidOption(secret_tail_refusal(backend, follows[key]))
        if problem:
            raise InvalidOption(
                f"the {backend} connection option {key}={text!r} is not valid: {problem}"
            )


def redis_database(url: BrokerURL) -> int:
    """The database number of a Redis URL: its path, one integer (``/0``, ``/15``), or
    the ``db`` query key; 0 when neither is given. Also refuses TLS query keys on a
    URL without TLS, where redis-py would fail on the first command.

    :raises InvalidOption: a TLS option (``ssl_ca_certs``...) on a URL without TLS.
    :raises InvalidURL: a path that is not one non-negative integer (``/1/5``,
        ``/abc``, ``/-1``), or a path and a ``db`` key that disagree.
    """
    tls = url.scheme.startswith("rediss")
    misplaced = sorted(k for k in url.query if k in TLS_QUERY_KEYS) if not tls else []
    follows = after_secrets(url.query)
    hidden = [follows[k] for k in misplaced if k in follows]
    if hidden:  # not named: its name may be part of the secret before it
        raise InvalidOption(secret_tail_refusal(url.scheme, hidden[0]))
    if misplaced:
        raise InvalidOption(
            f"{', '.join(misplaced)} only apply over TLS; use a rediss+... URL "
            f"(rediss{url.scheme.removeprefix('redis')}://) in {url}"
        )
    path = url.path.strip("/")
    db: int | None = None
    if path:
        if not path.isdigit() or not path.isascii() or int(path) > _MAX_INT:
            # a path holding a secret option ('/0/sentinel_password=pw') is not quoted
            got = f"{url.path!r} in {url}"
            if secret_in(url.path):
                got = (
                    f"the path of {url}, which holds what looks like a secret option (a '?' "
                    "typed as '/'?)"
                )
            raise InvalidURL(
                f"the path of a Redis URL is the database number, one integer from 0 to "
                f"{_MAX_INT} such as '/0', got {got}"
            )
        db = int(path)
    query_db = url.query.get("db")
    if query_db is not None:
        problem = _integer(0, _MAX_INT)(query_db)
        secret = follows.get("db")
        if problem and secret:  # its name too may be part of the secret
            raise InvalidURL(secret_tail_refusal(url.scheme, secret))
        if problem:
            raise InvalidURL(f"db={query_db!r} is not valid: {problem} (in {url})")
        if db is not None and int(query_db) != db and secret:
            raise InvalidURL(secret_tail_refusal(url.scheme, secret))
        if db is not None and int(query_db) != db:
            raise InvalidURL(
                f"{url} names database {db} in its path and {query_db} in db=; give one"
            )
        db = int(query_db)
    return db or 0


def _integer(low: int, high: int) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        try:
            value = int(text)
        except ValueError:
            return f"expected a whole number from {low} to {high}"
        return None if low <= value <= high else f"expected a whole number from {low} to {high}"

    return check


def _seconds(low_exclusive: bool) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value > 0 if low_exclusive else value >= 0)
        if ok and value <= MAX_SECONDS:
            return None
        low = "more than 0" if low_exclusive else "0"
        return f"expected a number of seconds from {low} to {MAX_SECONDS:.0f}"

    return check


#: Booleans redis-py reads as brokerkit does: it takes anything but 0/f/false/n/no
#: for true, "off" included.
_DRIVER_BOOLEANS = {"1", "true", "yes", "on", "0", "false", "no"}


def _boolean(text: str) -> str | None:
    if text.lower() in _DRIVER_BOOLEANS:
        return None
    return "expected a boolean: true or false (redis-py would read anything else as true)"


def _protocol(text: str) -> str | None:
    return None if text in ("2", "3") else "the RESP protocol version is 2 or 3"


def _cert_reqs(text: str) -> str | None:
    return None if text in _CERT_REQS else f"expected one of {', '.join(_CERT_REQS)}"


def _tls_version(text: str) -> str | None:
    known = {v.value: v.name for v in ssl.TLSVersion if v.value > 0}
    try:
        if int(text) in known:
            return None
    except ValueError:
        pass
    choices = ", ".join(f"{value} ({name})" for value, name in sorted(known.items()))
    return f"expected the number of a TLS version: {choices}"


def _readable_file(text: str) -> str | None:
    if not os.path.isfile(text):
        return "no such file (give the path of a PEM file this process can read)"
    if not os.access(text, os.R_OK):
        return "the file cannot be read by this process"
    return None


#: What marks a PEM private key protected by a pass phrase: PKCS#8's, and OpenSSL's
#: traditional form's header.
_ENCRYPTED_KEY = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")
#: How much of a certificate or key file is read to look for an encrypted key.
_KEY_FILE_READ = 1024 * 1024


def _key_file(text: str) -> str | None:
    """A readable file whose private key, if it holds one, has no pass phrase:
    brokerkit takes none, and OpenSSL, given none, would ask for it on the terminal at
    the first connection (blocking it), or fail it without one."""
    problem = _readable_file(text)
    if problem:
        return problem
    try:
        with open(text, "rb") as file:
            head = file.read(_KEY_FILE_READ)
    except OSError as exc:
        return f"the file cannot be read by this process ({exc.strerror})"
    if any(marker in head for marker in _ENCRYPTED_KEY):
        return (
            "its private key is encrypted (protected by a pass phrase), and brokerkit "
            "takes no pass phrase: OpenSSL would ask for it on the terminal at the first "
            "connection. Give the key without one (openssl pkey -in KEY -out KEY.plain), "
            "readable by this process's user only"
        )
    return None


def _client_name(text: str) -> str | None:
    if _CLIENT_NAME.fullmatch(text):
        return None
    return "1 to 128 printable ASCII characters without spaces, as CLIENT SETNAME wants"


_DRIVER_CHECKS: dict[str, Callable[[str], str | None]] = {
    "db": _integer(0, _MAX_INT),
    "health_check_interval": _integer(0, int(MAX_SECONDS)),
    "max_connections": _integer(1, _MAX_INT),
    "protocol": _protocol,
    "retry_on_timeout": _boolean,
    "socket_connect_timeout": _seconds(low_exclusive=True),
    "socket_keepalive": _boolean,
    "socket_timeout": _seconds(low_exclusive=True),
    "client_name": _client_name,
    "ssl_cert_reqs": _cert_reqs,
    "ssl_ca_certs": _readable_file,
    "ssl_certfile": _key_file,
    "ssl_keyfile": _key_file,
    "ssl_check_hostname": _boolean,
    "ssl_min_version": _tls_version,
}
