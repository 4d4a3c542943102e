"""The Redis connection of a brokerkit backend: built from the URL, errors mapped,
reconnects with backoff and jitter."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._options import DRIVER_QUERY_KEYS
from brokerkit.exceptions import BrokerError, ConnectionFailed, IncompatibleTopic

__all__ = ["Reconnector", "make_client", "redis_url", "translate_errors"]

_T = TypeVar("_T")

#: Errors after which trying again may succeed. A missing script means the server
#: restarted between redis-py loading a script and running it; the next call loads it.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.NoScriptError,
)


def redis_url(url: BrokerURL, *, hide_password: bool = False) -> str:
    """The plain ``redis://`` (or ``rediss://``) URL redis-py understands: brokerkit's
    own options removed, redis-py's connection arguments kept."""
    tls = url.scheme.startswith("rediss")
    driver_query = {k: v for k, v in url.query.items() if k in DRIVER_QUERY_KEYS}
    plain = BrokerURL(
        scheme="rediss" if tls else "redis",
        host=url.host or "localhost",
        port=url.port or 6379,
        username=url.username,
        password=url.password,
        path=url.path or "/0",
        query=driver_query,
    )
    return plain.render(hide_password=hide_password)


def make_client(url: BrokerURL, *, retries: int = 3) -> redis.Redis:
    """A redis-py client for ``url`` whose commands retry transient connection
    errors a few times with exponential backoff and jitter."""
    try:
        return redis.Redis.from_url(
            redis_url(url),
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
    except (ValueError, TypeError) as exc:
        from brokerkit.exceptions import InvalidURL

        raise InvalidURL(f"{url} is not a valid Redis URL: {exc}") from None


@contextlib.contextmanager
def translate_errors(url: BrokerURL, topic: str | None = None) -> Iterator[None]:
    """Turn redis-py errors into brokerkit's, never showing the password."""
    try:
        yield
    except redis.AuthenticationError as exc:
        raise ConnectionFailed(f"Redis at {url} refused the credentials: {exc}") from exc
    except redis.exceptions.NoScriptError as exc:
        raise ConnectionFailed(
            f"Redis at {url} lost brokerkit's scripts (did it restart?): {exc}"
        ) from exc
    except TRANSIENT_ERRORS as exc:
        raise ConnectionFailed(f"lost the connection to Redis at {url}: {exc}") from exc
    except redis.ResponseError as exc:
        if str(exc).startswith("WRONGTYPE"):
            what = f"the topic {topic!r}" if topic else "a key"
            raise IncompatibleTopic(
                f"{what} at {url} is stored in a Redis key of another type (maybe written "
                "by another program or another brokerkit backend); use another topic or prefix"
            ) from exc
        raise BrokerError(f"Redis at {url} answered with an error: {exc}") from exc
    except redis.RedisError as exc:
        raise BrokerError(f"Redis at {url} failed: {exc}") from exc


class Reconnector:
    """Retries an operation through connection loss and server restarts, with
    exponential backoff and full jitter, for up to ``timeout`` seconds in all.

    Used by consume loops, which must outlive a server restart; one-shot commands
    rely on the client's own short retry.
    """

    def __init__(
        self, url: BrokerURL, timeout: float, *, base: float = 0.05, cap: float = 2.0
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.base = base
        self.cap = cap
        #: Set when a call needed to reconnect; the caller may clear it.
        self.reconnected = False

    def call(self, operation: Callable[[], _T], *, topic: str | None = None) -> _T:
        """``operation()``, retried while the error is transient and time remains."""
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            try:
                with translate_errors(self.url, topic):
                    result = operation()
            except ConnectionFailed:
                attempt += 1
                delay = random.uniform(0, min(self.cap, self.base * 2**attempt))
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                self.reconnected = True
                continue
            return result
