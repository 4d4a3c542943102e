"""What a NATS URL means to nats-py: the one server it names, and its credentials."""

from __future__ import annotations

from brokerkit._url import BrokerURL
from brokerkit.exceptions import InvalidURL

__all__ = ["check_url", "credentials"]


def check_url(url: BrokerURL) -> None:
    """Refuse what a NATS URL cannot mean: several hosts (one server is reached), or a
    path (the stream is the ``prefix`` option).

    :raises InvalidURL: the URL names several hosts, or a path.
    """
    if url.more_hosts:
        raise InvalidURL(
            f"{url} names {len(url.hosts)} hosts: a NATS URL names one host (the server "
            "to connect to)"
        )
    if url.path.strip("/"):
        raise InvalidURL(
            f"a NATS URL has no path, got one in {url}: name the stream with the prefix "
            "option (nats://host:4222?prefix=NAME)"
        )


def credentials(url: BrokerURL) -> dict[str, str]:
    """nats-py's arguments for the URL's credentials: a user name and password, or a
    token (``nats://TOKEN@host``, the NATS form; a password alone is one too: NATS has
    no user without a name)."""
    user, password = url.username, url.password
    if user and password is not None:
        return {"user": user, "password": password}
    if user or password:
        return {"token": user or password or ""}
    return {}
