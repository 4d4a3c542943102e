"""Broker URLs: parsed once, immutable, and never showing their password."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from brokerkit._secret_options import (
    MASK,
    AfterPathSecret,
    is_secret,
    secret_in,
)
from brokerkit._url_text import (
    JUNK_AFTER_BRACKET,
    MAX_PORT,
    SCHEME,
    SCHEME_PREFIX,
    TOKEN_USER_FAMILIES,
    bad_host,
    check_query_secrets,
    check_userinfo,
    is_ipv6_address,
    mask_port,
    masked,
    port_masked,
    split_note,
    unparsed_secrets,
)
from brokerkit.exceptions import InvalidURL

__all__ = ["BrokerURL", "unparsed_secrets"]


@dataclass(frozen=True)
class BrokerURL:
    """A parsed broker URL: ``scheme://[user:password@]host[:port]/[path][?k=v&...]``.

    The host part may list several hosts, comma-separated
    (``redis+stream://h1:7000,h2:7001/0``): :attr:`host` and :attr:`port` are the
    first, :attr:`more_hosts` the others, and :attr:`hosts` all of them in order. A
    backend that reads one host refuses the others with :class:`InvalidURL`.

    ``str()`` and ``repr()`` mask the password (and a user name that is a token: see
    :attr:`username_is_secret`), and the query from the value of the first option
    whose name is a secret (holds ``password``, ``secret`` or ``token``, or has the
    word ``nkey``, ``creds``, ``api_key``...: see
    :func:`~brokerkit._secret_options.is_secret`) on: that value and every
    option after it show as one ``***`` (``?sentinel=m&sentinel_password=***``), as
    what follows a secret may be the end of it, split at a raw ``&``. A path holding
    such a name and ``=`` (an AMQP vhost ``token=x``, or a ``?`` typed as ``/``) is
    taken, and shown up to that ``=``, then one ``***`` for all that follows, the query
    too (``/token=***``); one after a raw ``&`` or ``;`` in a path segment
    (``/0&token=x``: a ``?`` typed as ``&``) is refused. :meth:`render`
    with ``hide_password=False`` gives them back for the driver that needs them. An
    error about a URL never quotes its password, whatever its form: a mistyped
    ``://`` and user-info that would not parse are masked too, and user-info holding
    an unencoded ``/ ? # @ + =`` is refused with :class:`~brokerkit.InvalidURL`
    rather than guessed at; so is a secret query value holding an unencoded ``+``
    (read as a space), ``#`` (which would cut it short) or ``&`` followed by what is
    not an option (which would split it), and the host, another option's value or
    the fragment holding a secret option (``?sentinel=m?sentinel_password=pw``: a
    ``?`` typed for ``&``; ``nats://token=pw``: a ``?`` left out). A port is a number
    from 1 to 65535: an error quotes anything else written where the port goes as
    ``***`` (``redis+stream://user:s3cret/0``, the ``@host`` left out, would show the
    password), and says what is wrong with the host (an IPv6 address's brackets, a
    port out of range).
    """

    scheme: str
    host: str = ""
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    #: The hosts after the first of a comma-separated list, as (host, port) pairs.
    more_hosts: tuple[tuple[str, int | None], ...] = ()

    def __post_init__(self) -> None:
        for _, port in self.hosts:
            if port is not None and not 1 <= port <= MAX_PORT:
                raise InvalidURL(
                    f"{self.render()!r} names port {port}: a port is a number from 1 to "
                    f"{MAX_PORT} (leave it out for the backend's default)"
                )

    @property
    def hosts(self) -> tuple[tuple[str, int | None], ...]:
        """Every host the URL names, the first one first, as (host, port) pairs."""
        return ((self.host, self.port), *self.more_hosts)

    @classmethod
    def parse(cls, url: str | BrokerURL) -> BrokerURL:
        """Parse ``url``; raise :class:`~brokerkit.InvalidURL` naming what is wrong."""
        if isinstance(url, BrokerURL):
            return url
        if not isinstance(url, str):
            raise InvalidURL(f"a broker URL must be a string, not {type(url).__name__}")
        scheme_part, separator, _ = url.partition("://")
        if not scheme_part and separator:
            raise InvalidURL(f"{masked(url)!r} has an empty scheme")
        if not separator or SCHEME.fullmatch(scheme_part) is None:
            # No scheme, or a "://" only later on (inside a password, say): the URL
            # does not start as a URL, and must not be read as a path with the secret.
            typo = SCHEME_PREFIX.match(url)
            hint = ""
            if typo and "/" in typo.group():
                hint = f"; write {typo.group().rstrip('/') + '//'!r} with two slashes"
            raise InvalidURL(
                f"{masked(url)!r} is not a broker URL: it needs a scheme and '://', "
                f"as in 'memory://' or 'redis+stream://localhost:6379/0'{hint}"
            )
        check_userinfo(url)
        check_query_secrets(url)
        first_host, more_hosts = _split_hosts(url)
        try:
            parts = urlsplit(first_host)
            port = parts.port
            if JUNK_AFTER_BRACKET.search(parts.netloc.rpartition("@")[2]):
                raise ValueError("text after an IPv6 address's ']'")  # urllib drops it
        except ValueError:
            # The parser's message may quote part of the password: say what to fix instead.
            raise bad_host(url) from None
        scheme = parts.scheme.lower()
        if not scheme:
            raise InvalidURL(f"{masked(url)!r} has an empty scheme")
        in_path = secret_in(unquote(parts.path))
        query: dict[str, str] = AfterPathSecret(in_path[0]) if in_path else {}
        # the first secret read: what follows may be its end, later secrets' names too
        secret = in_path[0] if in_path else ""
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in query and secret:
                raise InvalidURL(
                    f"an option is given twice in {masked(url)!r}, the second time after "
                    f"{secret!r}; it is not named, as {split_note(secret)}"
                )
            if key in query:
                raise InvalidURL(f"the option {key!r} is given twice in {masked(url)!r}")
            query[key] = value
            secret = secret or (key if is_secret(key) else "")
        return cls(
            scheme=scheme,
            host=unquote(parts.hostname or ""),
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            path=unquote(parts.path),
            query=query,
            more_hosts=more_hosts,
        )

    @property
    def username_is_secret(self) -> bool:
        """Whether :attr:`username` is itself a secret, masked as a password is: a user
        part without a password in a NATS URL (``nats://TOKEN@host``, on every
        ``nats`` scheme), which NATS reads as an authentication token. Elsewhere a
        user part is a user name (``redis+stream://alice@host``), and is shown."""
        return (
            self.username is not None
            and self.password is None
            and self.family in TOKEN_USER_FAMILIES
        )

    def render(self, *, hide_password: bool = True) -> str:
        """The URL as a string, with the password (and a token, see
        :attr:`username_is_secret`) masked unless asked otherwise."""
        netloc = ""
        if hide_password and self.username_is_secret:
            netloc = f"{MASK}@"
        elif self.username is not None or self.password is not None:
            netloc = quote(self.username or "", safe="")
            if self.password is not None:
                secret = MASK if hide_password else quote(self.password, safe="")
                netloc += f":{secret}"
            netloc += "@"
        if self.host:
            netloc += _host_text(self.host)
        if self.port is not None:
            netloc += f":{self.port}"
        for host, port in self.more_hosts:
            netloc += "," + _host_text(host)
            netloc += f":{port}" if port is not None else ""
        in_path = secret_in(self.path) if hide_password else None
        if in_path:
            # A secret option written in the path (an AMQP vhost "token=x", or a "?"
            # typed as "&" or "/"): the path is shown up to its "=", then one "***"
            # for its value and all that follows, the query too (which may be the end
            # of that value, split at a raw "?").
            _, end = in_path
            return f"{self.scheme}://{netloc}{quote(self.path[:end])}={MASK}"
        text = f"{self.scheme}://{netloc}{quote(self.path)}"
        if not self.query:
            return text
        if not hide_password:
            return f"{text}?{urlencode(self.query, safe='*', quote_via=quote)}"
        # Shown up to the first secret option's name: its value and every option after
        # it (which may be the end of the value, split at a raw "&") are one "***".
        shown: list[tuple[str, str]] = []
        hidden = ""
        for key, value in self.query.items():
            if is_secret(key):
                hidden = "&" * bool(shown) + f"{quote(key, safe='*')}={MASK}"
                break
            shown.append((key, value))
        return f"{text}?{urlencode(shown, safe='*', quote_via=quote)}{hidden}"

    @property
    def family(self) -> str:
        """The part of the scheme before ``+``: ``redis`` for ``redis+stream``."""
        return self.scheme.split("+", 1)[0]

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"BrokerURL({self.render()!r})"


def _host_text(host: str) -> str:
    """``host`` as a URL writes it, so that parsing it again gives ``host``: an IPv6
    address in brackets, a ``%`` (an IPv6 zone's, ``fe80::1%12``) as ``%25``, and
    what would end the host or start another part (``/ ? # @ , : [ ]``: a
    ``memory://`` name may hold them, percent-encoded) percent-encoded."""
    if is_ipv6_address(host):
        return f"[{host.replace('%', '%25')}]"
    host = host.replace("%", "%25")
    for char in "/?#@,:[]":
        if char in host:
            host = host.replace(char, f"%{ord(char):02X}")
    return host


def is_scheme(text: object) -> bool:
    """Whether ``text`` is a URL scheme :meth:`BrokerURL.parse` reads: a letter, then
    letters, digits and ``+ . -`` (``redis+stream``, ``kombu+amqp``)."""
    return isinstance(text, str) and SCHEME.fullmatch(text) is not None


def _split_hosts(url: str) -> tuple[str, tuple[tuple[str, int | None], ...]]:
    """``url`` with only the first of a comma-separated host list, and the others
    parsed as (host, port) pairs."""
    scheme, _, rest = url.partition("://")
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at, hostlist = authority.rpartition("@")
    if "," not in hostlist:
        return url, ()
    first, *others = hostlist.split(",")
    more: list[tuple[str, int | None]] = []
    for other in others:
        try:
            parsed = urlsplit(f"{scheme}://{other}")
            port = parsed.port
        except ValueError:
            port, parsed = -1, None
        if parsed is None or port == -1 or not parsed.hostname or parsed.netloc != other:
            raise InvalidURL(
                f"{masked(port_masked(url))!r} lists the host {mask_port(other)!r}, "
                "which is not host or host:port "
                f"with a numeric port from 1 to {MAX_PORT}; list hosts as h1:7000,h2:7001"
            )
        more.append((unquote(parsed.hostname), port))
    if not first:
        raise InvalidURL(f"{masked(url)!r} has an empty first host in its host list")
    return f"{scheme}://{userinfo}{at}{first}{tail}", tuple(more)
