"""Dead-lettering the entries reclaimed past ``max_deliveries``: as a consumer
fetches them, and in a background round for those whose group nobody fetches."""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from brokerkit._logging import subscription_fields
from brokerkit._message import Message
from brokerkit._subscription_async import AsyncSubscription
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._client_async import Reconnector
from brokerkit.backends.redis._connection import translate_errors
from brokerkit.backends.redis.stream.calls_async import StreamScripts
from brokerkit.backends.redis.stream.keys import StreamKeyspace
from brokerkit.backends.redis.stream.options import RedisStreamOptions, StreamState
from brokerkit.backends.redis.stream.scripts import text
from brokerkit.exceptions import BrokerError, IncompatibleTopic

__all__ = ["StreamReaping"]

log = logging.getLogger("brokerkit.redis")

#: The reaper lists this many idle pending entries of a group per script call...
_REAP_PAGE = 100
#: ... and at most this many pages of each subscription's group per round.
_REAP_PAGES = 10


class StreamReaping:
    """The dead-lettering of :class:`AsyncRedisStreamBroker`'s reclaimed poison entries."""

    url: BrokerURL
    options: RedisStreamOptions
    _scripts: StreamScripts
    #: The client settlements run on (see :class:`.StreamSettling`).
    _settle_client: aioredis.Redis
    _keys: StreamKeyspace
    _reconnector: Reconnector
    _lock: threading.Lock
    _subscriptions: weakref.WeakSet[AsyncSubscription]

    if TYPE_CHECKING:  # provided by StreamFetching, StreamNacking and AsyncBroker

        def dead_letter_topic(self, topic: str) -> str: ...

        async def _wrong_key(self, topic: str, group: str | None) -> IncompatibleTopic | None: ...

        def _decode(self, topic: str, flat: Any) -> Message: ...

        def _dead_fields(
            self, topic: str, entry_id: str, message: Message, reason: str, deliveries: int
        ) -> list[Any]: ...

    async def _reap_all(self) -> None:
        """Dead-letter the idle entries past ``max_deliveries`` of every open
        subscription's group.

        Consumers reclaim idle entries as they fetch, and dead-letter those past
        ``max_deliveries`` then. An entry whose last allowed lease ran out while no
        consumer of its group fetches would wait for the next fetch; this reaper, a
        background round of a broker with subscriptions, moves it to the dead-letter
        topic within about one visibility timeout instead. Each round looks at up to
        ``_REAP_PAGES * _REAP_PAGE`` idle entries of each group, going on from where
        the last round stopped, so an entry behind many idle ones is reached too.

        One subscription's failure never stops the others' reaping. An unexpected one
        is logged with its traceback; a broker error (a server away, a failover) is
        raised once every subscription had its turn, for the periodic round to report
        quietly (once when the rounds start failing, not once a round)."""
        limit = self.options.max_deliveries
        if limit is None:
            return
        with self._lock:
            subscriptions = [s for s in self._subscriptions if not s.closed]
        min_idle = int(self.options.visibility_timeout * 1000)
        failed: BrokerError | None = None
        for subscription in subscriptions:
            state: StreamState = subscription.state
            try:
                # Page by page from where the last round stopped, so that idle entries
                # still under max_deliveries (a crashed consumer's, delayed retries)
                # never hide the ones behind them: at most _REAP_PAGES a round, and
                # the next round starts at the beginning once the end was reached.
                for _ in range(_REAP_PAGES):
                    with translate_errors(self.url, subscription.topic):
                        cursor, reaped = await self._scripts.reap(
                            keys=[state.key, state.lost_key, state.lease_key],
                            args=[
                                subscription.group,
                                subscription.consumer,
                                min_idle,
                                limit,
                                _REAP_PAGE,
                                state.reap_cursor,
                            ],
                        )
                    state.reap_cursor = text(cursor)
                    for raw_id, raw_fields, count in reaped:
                        message = self._decode(subscription.topic, raw_fields)
                        entry_id = text(raw_id)
                        await self._dead_letter_claimed(subscription, entry_id, message, int(count))
                    if state.reap_cursor == "-":
                        break
            except BrokerError as exc:
                failed = failed or exc
            except Exception:
                log.exception(
                    "could not dead-letter the expired poison entries of %s",
                    state.key,
                    extra=subscription_fields(subscription),
                )
        if failed is not None:
            raise failed

    async def _dead_letter_claimed(
        self, subscription: AsyncSubscription, entry_id: str, message: Message, deliveries: int
    ) -> None:
        """Dead-letter an entry reclaimed past ``max_deliveries``. A crash before this
        leaves it pending: it is reclaimed again, and dead-lettered then."""
        state: StreamState = subscription.state
        dlq = self._keys.topic(self.dead_letter_topic(subscription.topic))
        fields = self._dead_fields(
            subscription.topic, entry_id, message, "max_deliveries", deliveries
        )
        flag = "1" if self.options.delete_acked else "0"
        args = [subscription.group, subscription.consumer, entry_id, "dead", flag, *fields]
        # On the settling client, as every settlement: redis-py never resends it. Sent
        # again by the reconnector after a lost reply, unflagged, it finds the entry
        # no longer pending for this consumer and does nothing (one dead letter).
        try:
            await self._reconnector.call(
                lambda: self._scripts.nack(
                    keys=[state.key, dlq, state.delayed_key, state.wake_key, state.lost_key],
                    args=args,
                    client=self._settle_client,
                ),
                topic=subscription.topic,
            )
        except IncompatibleTopic as exc:  # the dead-letter topic's key, say: named
            named = await self._wrong_key(subscription.topic, subscription.group)
            if named is None:
                raise
            raise named from exc
