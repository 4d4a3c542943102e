"""The stream of a NATS broker's ``prefix`` and the durable pull consumers of its
groups: made on first use, and made again, from the subscription's start as
``subscribe`` made them, when a pull finds a group's consumer gone (deleted on its own
or with its stream)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from nats.aio.msg import Msg

from brokerkit._logging import log_fields
from brokerkit._subscription_async import AsyncSubscription
from brokerkit.backends.nats._client import CONSUMER_NOT_FOUND, NatsClient
from brokerkit.backends.nats._leases import Leases
from brokerkit.backends.nats._manage import ensure_stream
from brokerkit.backends.nats._reader import ConsumerGone, Reader
from brokerkit.backends.nats._wire import consumer_description, consumer_name, subject_for
from brokerkit.exceptions import BrokerError, ConnectionFailed, IncompatibleTopic, InvalidOption

__all__ = ["Groups", "check_start"]

log = logging.getLogger("brokerkit.nats")

#: The key of a consumer's metadata (nats-server 2.10 and later) naming the broker
#: that made it: :meth:`Groups.ensure_group`.
MADE_BY = "brokerkit_made_by"


class Groups:
    """The stream ``stream`` on ``client``, and the durable consumer of each group
    subscribed to one of its topics (kept on the server after the broker closes); and
    what of them it made itself: the stream, and the durable consumers, also those made
    again after they were found gone."""

    def __init__(
        self, client: NatsClient, stream: str, visibility_timeout: float, leases: Leases
    ) -> None:
        self._client = client
        self._stream = stream
        #: The broker's leases: those of a consumer made again are let go.
        self._leases = leases
        #: The ``AckWait`` of the consumers made here.
        self._visibility_timeout = visibility_timeout
        #: Whether the stream is known to exist: False makes the next use check again.
        self.stream_ready = False
        #: Whether this made the stream.
        self.made_stream = False
        #: The durable consumers this made.
        self.made_consumers: set[str] = set()
        #: Names this (one broker) in the metadata of the consumers it makes.
        self.maker = uuid.uuid4().hex

    async def ensure_stream(self) -> None:
        if not self.stream_ready:
            if await ensure_stream(self._client, self._stream):
                self.made_stream = True
            self.stream_ready = True

    async def ensure_group(self, subscription: AsyncSubscription) -> tuple[dict[str, Any], bool]:
        """The info of the group's durable consumer, made unless it exists; and whether
        this made it."""
        topic, group = subscription.topic, subscription.group
        durable = consumer_name(topic, group)
        made = False
        info = await self._client.api(
            f"CONSUMER.INFO.{self._stream}.{durable}", None, f"find the group {group!r}"
        )
        if info.get("error", {}).get("err_code") == CONSUMER_NOT_FOUND:
            config = {
                "durable_name": durable,
                "description": consumer_description(topic, group),
                "ack_policy": "explicit",
                "ack_wait": int(self._visibility_timeout * 1e9),
                "max_deliver": -1,  # brokerkit dead-letters, see AsyncNatsBroker._fetch
                "max_ack_pending": 10_000,
                "filter_subject": subject_for(self._stream, topic),
                "replay_policy": "instant",
                **check_start(subscription.start),
                # Who made it: another broker's create of the same config is refused
                # (it differs in this), so that only one counts it as made (2.10 and
                # later; 2.9 drops metadata, and takes a create of one that exists).
                "metadata": {MADE_BY: self.maker},
            }
            info = await self._client.api(
                f"CONSUMER.DURABLE.CREATE.{self._stream}.{durable}",
                # Create only: made meanwhile by another broker (with another AckWait,
                # maybe), the consumer is not changed under its feet, but refused
                # (JetStream 2.10 and later: an older one updates it all the same).
                {"stream_name": self._stream, "config": config, "action": "create"},
                f"create the group {group!r}",
            )
            maker = (info.get("config", {}).get("metadata") or {}).get(MADE_BY, self.maker)
            made = "error" not in info and maker == self.maker
            if "error" in info:  # made by another broker meanwhile?
                refused = info
                info = await self._client.api(
                    f"CONSUMER.INFO.{self._stream}.{durable}", None, f"find the group {group!r}"
                )
                if info.get("error", {}).get("err_code") == CONSUMER_NOT_FOUND:
                    info = refused  # (no: the reason is the create's, not "not found")
        if "error" in info:
            raise BrokerError(
                f"JetStream refused the group {group!r} of {topic!r}: "
                f"{info['error'].get('description')}"
            )
        if made:
            self.made_consumers.add(durable)
        return info, made

    async def restore_group(self, subscription: AsyncSubscription, reader: Reader) -> bool:
        """Make the group's consumer again (and its stream) after a pull found it gone,
        as the broker's ``subscribe`` made it; whether this made it (else it was there).
        Made here, the leases the broker held of the consumer before are let go
        (:meth:`Leases.let_go`): the new one holds none of them.

        :raises IncompatibleTopic: it cannot be made again.
        """
        topic, group = subscription.topic, subscription.group
        durable = consumer_name(topic, group)
        lose = self._leases.let_go(durable)
        self.stream_ready = False  # (the stream may be gone too)
        try:
            await self.ensure_stream()
            info, made = await self.ensure_group(subscription)
        except ConnectionFailed:
            raise
        except BrokerError as exc:
            raise IncompatibleTopic(
                f"the JetStream consumer {durable!r} of the group {group!r} of {topic!r} "
                f"(stream {self._stream!r}) is gone, deleted with its stream or on its own, "
                f"and cannot be made again: {exc}"
            ) from exc
        reader.ack_wait = info["config"]["ack_wait"] / 1e9
        reader.created = info.get("created")
        if made:
            lost = lose()
            log.warning(
                "the JetStream consumer %r of the group %r of %r (stream %r) was gone "
                "(deleted); made it again, from start=%s%s",
                durable,
                group,
                topic,
                self._stream,
                subscription.start or "earliest",
                f": the {lost} lease(s) held of the one before are lost" if lost else "",
                extra=log_fields(),
            )
        return made

    async def pull(
        self, subscription: AsyncSubscription, reader: Reader, max_messages: int, timeout: float
    ) -> list[tuple[float, Msg, float | None]]:
        """``reader.pull``; a consumer found gone is made again and asked once more.

        :raises IncompatibleTopic: it cannot be made again, or still does not answer.
        """
        deadline = time.monotonic() + timeout
        closed = lambda: subscription.closed  # noqa: E731
        try:
            return await reader.pull(max_messages, timeout, closed)
        except ConsumerGone:
            made = await self.restore_group(subscription, reader)
        left = max(deadline - time.monotonic(), 0.0)
        try:
            return await reader.pull(max_messages, left, closed)
        except ConsumerGone:
            if not made:
                # It exists but did not answer (a clustered consumer between leaders?):
                # the next fetch asks again.
                log.warning(
                    "the JetStream consumer of the group %r of %r exists but did not answer a pull",
                    subscription.group,
                    subscription.topic,
                    extra=log_fields(),
                )
                return []
            raise IncompatibleTopic(
                f"the JetStream consumer of the group {subscription.group!r} of "
                f"{subscription.topic!r} (stream {self._stream!r}) was made again but does "
                "not answer pull requests"
            ) from None


def check_start(start: object) -> dict[str, Any]:
    """The deliver policy of a group that starts at ``start``: the topic's history
    (default), only what comes next, or a stream sequence number (ASCII digits, 1 to
    JetStream's largest, 2**64 - 1). Checked at every subscribe, as on the other
    backends, whether or not the group exists (its consumer keeps where it started).

    :raises InvalidOption: ``start`` is none of those.
    """
    if start is None or start == "earliest":
        return {"deliver_policy": "all"}
    if start == "latest":
        return {"deliver_policy": "new"}
    if isinstance(start, str) and _SEQUENCE.fullmatch(start) and 0 < int(start) <= _MAX_SEQUENCE:
        return {"deliver_policy": "by_start_sequence", "opt_start_seq": int(start)}
    number = isinstance(start, int) and not isinstance(start, bool)
    shown = repr(start) if not isinstance(start, str) or len(start) <= 60 else repr(start[:60])
    raise InvalidOption(
        f"start={shown} is not a position on NATS: use 'earliest', 'latest' or a "
        f"stream sequence number written in digits, 1 to {_MAX_SEQUENCE}"
        + (f" (a str: start='{start}')" if number else "")
    )


_SEQUENCE = re.compile(r"[0-9]+")
#: JetStream's stream sequences are unsigned 64-bit numbers.
_MAX_SEQUENCE = 2**64 - 1
