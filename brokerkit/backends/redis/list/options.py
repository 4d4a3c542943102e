"""The options of ``redis+list://`` URLs (no I/O: shared by the sync and async broker)."""

from __future__ import annotations

from dataclasses import dataclass

from brokerkit._option_secrets import quoted_value
from brokerkit.backends.redis._options import RedisOptions
from brokerkit.backends.redis.list.keys import check_queue_key
from brokerkit.exceptions import InvalidOption

__all__ = ["MIN_HEARTBEAT", "RedisListOptions"]

#: A consumer that has not been heard from for this long is dead, at the least.
MIN_HEARTBEAT = 5.0


@dataclass(frozen=True)
class RedisListOptions(RedisOptions):
    """Options of ``redis+list://`` URLs (and every :class:`RedisOptions` one)."""

    #: Publish plain payloads, without brokerkit's envelope, for other programs
    #: that read the list; such messages carry no headers. Plain elements are
    #: always consumed, whatever this says.
    raw: bool = False
    #: The content type of plain elements (default: JSON if it parses, else
    #: text if UTF-8, else bytes).
    raw_content_type: str | None = None
    #: The queue's key, ``*`` standing for the topic (``queue:*``: topic ``orders``
    #: is the list ``queue:orders``), to take over a queue another program fills.
    #: Default: ``<prefix>:{<topic>}``.
    queue_key: str | None = None
    #: Keep at most this many waiting messages per topic, dropping the oldest.
    maxlen: int | None = None
    #: How often, in seconds, a waiting consumer looks for delayed messages that
    #: became due. A consumer wakes exactly when the next message it knows of is
    #: due; this bounds how late one published (or nacked with a delay) elsewhere,
    #: while it waited, comes out.
    delay_poll_interval: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.delay_poll_interval <= 60:
            raise InvalidOption(
                "delay_poll_interval must be a number of seconds above 0 and at most 60, "
                f"got {quoted_value('delay_poll_interval', self.delay_poll_interval)}"
            )
        if self.queue_key is not None:
            check_queue_key(self.queue_key, cluster=self.cluster)
        if self.maxlen is not None and self.maxlen < 1:
            raise InvalidOption(
                f"maxlen must be 1 or more (or unset), got {quoted_value('maxlen', self.maxlen)}"
            )

    @property
    def heartbeat(self) -> float:
        """Seconds after which a consumer not heard from is taken for dead."""
        return max(self.visibility_timeout, MIN_HEARTBEAT)

    @property
    def renew_interval(self) -> float:
        """Seconds between lease renewals: a third of the visibility timeout."""
        return self.visibility_timeout / 3
