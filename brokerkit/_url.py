"""Broker URLs: parsed once, immutable, and never showing their password."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from brokerkit.exceptions import InvalidURL

__all__ = ["BrokerURL"]

_MASK = "***"


@dataclass(frozen=True)
class BrokerURL:
    """A parsed broker URL: ``scheme://[user:password@]host[:port]/[path][?k=v&...]``.

    ``str()`` and ``repr()`` mask the password; :meth:`render` with
    ``hide_password=False`` gives it back for the driver that needs it.
    """

    scheme: str
    host: str = ""
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str = ""
    query: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str | BrokerURL) -> BrokerURL:
        """Parse ``url``; raise :class:`~brokerkit.InvalidURL` naming what is wrong."""
        if isinstance(url, BrokerURL):
            return url
        if not isinstance(url, str):
            raise InvalidURL(f"a broker URL must be a string, not {type(url).__name__}")
        if "://" not in url:
            raise InvalidURL(
                f"{_masked(url)!r} is not a broker URL: it needs a scheme, "
                "as in 'memory://' or 'redis+stream://localhost:6379/0'"
            )
        _check_userinfo(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            # The driver's message may quote part of the password: say what to fix instead.
            raise InvalidURL(
                f"{_masked(url)!r} is not a valid URL: the port must be a number, and "
                "/ # ? @ : in a user name or password must be percent-encoded (%2F %23 %3F %40 %3A)"
            ) from None
        scheme = parts.scheme.lower()
        if not scheme:
            raise InvalidURL(f"{_masked(url)!r} has an empty scheme")
        query: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in query:
                raise InvalidURL(f"the option {key!r} is given twice in {_masked(url)!r}")
            query[key] = value
        return cls(
            scheme=scheme,
            host=unquote(parts.hostname or ""),
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            path=unquote(parts.path),
            query=query,
        )

    def render(self, *, hide_password: bool = True) -> str:
        """The URL as a string, with the password masked unless asked otherwise."""
        netloc = ""
        if self.username is not None or self.password is not None:
            netloc = quote(self.username or "", safe="")
            if self.password is not None:
                secret = _MASK if hide_password else quote(self.password, safe="")
                netloc += f":{secret}"
            netloc += "@"
        if self.host:
            netloc += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            netloc += f":{self.port}"
        text = f"{self.scheme}://{netloc}{quote(self.path)}"
        if self.query:
            text += "?" + urlencode(dict(self.query))
        return text

    @property
    def family(self) -> str:
        """The part of the scheme before ``+``: ``redis`` for ``redis+stream``."""
        return self.scheme.split("+", 1)[0]

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"BrokerURL({self.render()!r})"


def _check_userinfo(url: str) -> None:
    """Refuse a password whose unencoded / # ? would make the rest of it look like a
    host, port, path or query, where it would be shown."""
    rest = url.partition("://")[2]
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    tail = rest[authority_end:]
    at = tail.find("@")
    # An "@" after the host is part of a user name or password, unless it is inside an
    # option's value (client_name=me@host).
    if at != -1 and "=" not in tail[:at]:
        scheme = url.partition("://")[0]
        raise InvalidURL(
            f"a {scheme}:// URL whose user name or password holds / # or ? must percent-encode "
            "them (%2F %23 %3F); the URL is not shown, as it may contain the password"
        )


def _masked(url: str) -> str:
    """Mask the password of a URL that may not even parse."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, hostpart = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:{_MASK}@{hostpart}"
