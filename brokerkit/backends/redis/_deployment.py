"""Which Redis deployment a URL names (one server, a Redis Cluster, or a master that
sentinels follow), checked before anything connects. No I/O."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from brokerkit._error_text import value_text
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._options import RedisOptions, redis_database
from brokerkit.exceptions import InvalidURL

__all__ = ["Deployment"]

#: The query keys that say which deployment a URL names.
_DEPLOYMENT_KEYS = ("cluster", "sentinel", "sentinel_password", "sentinel_username")


@dataclass(frozen=True)
class Deployment:
    """The kind of deployment and how to reach it.

    :ivar kind: ``"server"``, ``"cluster"`` or ``"sentinel"``.
    :ivar hosts: the hosts of the URL: the server, the cluster's seeds, or the sentinels.
    :ivar master: the name of the master the sentinels follow (Sentinel only).
    :ivar sentinel_password: the sentinels' own password (Sentinel only).
    :ivar sentinel_username: the sentinels' own ACL user (Sentinel only).
    """

    kind: Literal["server", "cluster", "sentinel"]
    hosts: tuple[tuple[str, int], ...]
    master: str = ""
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)
    sentinel_username: str | None = None

    @classmethod
    def of(cls, url: BrokerURL, options: RedisOptions | None = None) -> Deployment:
        """The deployment ``url`` names, as read by ``options`` (which win over its
        query); without options, its query's deployment keys are read exactly as
        :class:`RedisOptions` reads them (``cluster=True`` is a cluster either way).

        :raises InvalidURL: several hosts without ``cluster=true`` or ``sentinel=``; a
            database other than 0 on a cluster; ``cluster`` and ``sentinel`` together
            (options refuse that first); no host with either.
        :raises InvalidOption: without options, a deployment key of the query that
            :class:`RedisOptions` refuses (``cluster=maybe``, an empty ``sentinel=``).
        """
        if options is None:
            deployment_query = {k: v for k, v in url.query.items() if k in _DEPLOYMENT_KEYS}
            options = RedisOptions.build(deployment_query, {}, backend=url.scheme)
        cluster, sentinel = options.cluster, options.sentinel
        sentinel_password = options.sentinel_password
        default_port = 26379 if sentinel is not None else 6379
        hosts = tuple(
            (host or "localhost", default_port if port is None else port)
            for host, port in url.hosts
        )
        for host, _ in hosts:
            _check_host_name(url, host)
        database = redis_database(url)
        if cluster and sentinel is not None:
            raise InvalidURL(f"{url} names both cluster=true and sentinel=; give one")
        if (cluster or sentinel is not None) and not url.host:
            what = "cluster seeds" if cluster else "sentinels"
            raise InvalidURL(f"{url} names no host: list the {what} as h1:port1,h2:port2")
        if cluster:
            if database != 0:
                raise InvalidURL(
                    f"a Redis Cluster has database 0 only; {url} names database {database}: "
                    "use /0 (or separate topics with prefix=)"
                )
            return cls("cluster", hosts)
        if sentinel is not None:
            return cls("sentinel", hosts, sentinel, sentinel_password, options.sentinel_username)
        if len(hosts) > 1:
            raise InvalidURL(
                f"{url} names {len(hosts)} hosts: several hosts are the seeds of a Redis "
                "Cluster (add cluster=true) or the sentinels of one master (add "
                "sentinel=<master name>); one server is one host"
            )
        return cls("server", hosts)

    def sentinel_kwargs(self, connection: dict[str, Any]) -> dict[str, Any]:
        """The connection arguments of the sentinels themselves: the master's TLS and
        socket settings, the sentinels' own user and password (none unless given)."""
        kwargs = {
            key: value
            for key, value in connection.items()
            if key.startswith(("socket_", "ssl")) or key in ("retry", "client_name")
        }
        if self.sentinel_password is not None:
            kwargs["password"] = self.sentinel_password
        if self.sentinel_username is not None:
            kwargs["username"] = self.sentinel_username
        return kwargs


def _check_host_name(url: BrokerURL, host: str) -> None:
    """Refuse a host no resolver could be asked for: an empty label (``a..b``) or one
    of more than 63 characters, which the socket's IDNA encoding refused with a bare
    ``UnicodeError`` at the first command.

    :raises InvalidURL: naming the host and what a host name is.
    """
    try:
        host.encode("idna")
    except UnicodeError:
        raise InvalidURL(
            f"{value_text(str(url))} names the host {value_text(host)}, which is not a "
            "host name: each of its dot-separated labels must be 1 to 63 characters"
        ) from None
