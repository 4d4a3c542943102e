"""Sending redis+stream deliveries back: a nack that requeues (at once or after a
delay), dead-letters or, for deliveries no handler saw, returns them uncounted; one
nack script a delivery, pipelined, run as every settlement is (see
:meth:`.StreamSettling._run_settling`: retried through connection loss, flagged as a
retry; with ``replicas``, waited for)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from brokerkit._acompat import Lock
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._message import Message
from brokerkit.backends.redis._heartbeat_async import LeaseKeeper
from brokerkit.backends.redis._stream_fields import encode_fields
from brokerkit.backends.redis.stream.calls_async import Call, StreamScripts
from brokerkit.backends.redis.stream.entries import StreamReceipt
from brokerkit.backends.redis.stream.keys import StreamKeyspace
from brokerkit.backends.redis.stream.options import (
    ORIGINAL_ENTRY_FIELD,
    RedisStreamOptions,
    StreamState,
)
from brokerkit.backends.redis.stream.scheduling import PARKING
from brokerkit.exceptions import IncompatibleTopic, ReplicationTimeout, StaleDelivery

__all__ = ["StreamNacking"]


class StreamNacking:
    """The nack, and the hand-back of unhandled deliveries, of
    :class:`AsyncRedisStreamBroker`; the fields of a dead letter."""

    options: RedisStreamOptions
    _scripts: StreamScripts
    _keys: StreamKeyspace
    _keeper: LeaseKeeper
    #: Held while a nack takes its deliveries out of the keeper (see
    #: :class:`.StreamSettling`).
    _lease_lock: Lock

    if TYPE_CHECKING:  # provided by StreamSettling, AsyncRedisStreamBroker and AsyncBroker

        def dead_letter_topic(self, topic: str) -> str: ...

        async def _wrong_key(self, topic: str, group: str | None) -> IncompatibleTopic | None: ...

        @staticmethod
        def _mark(deliveries: Iterable[AsyncDelivery]) -> None: ...

        async def _run_settling(
            self,
            calls: Sequence[Call],
            flags_at: int | None,
            retried: list[bool] | None = None,
            unconfirmed: dict[str, int] | None = None,
        ) -> list[Any]: ...

        def _unconfirmed(
            self,
            what: str,
            deliveries: Sequence[AsyncDelivery],
            unconfirmed: dict[str, int],
            stale: Sequence[AsyncDelivery],
        ) -> ReplicationTimeout: ...

    async def _nack(self, deliveries: Sequence[AsyncDelivery], requeue: bool) -> None:
        await self._send_back(deliveries, "requeue" if requeue else None)

    async def _nack_with(
        self,
        deliveries: Sequence[AsyncDelivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        how = None if not requeue else "delay" if delay else "requeue"
        delay_ms = math.ceil(delay * 1000) if delay else 0
        await self._send_back(deliveries, how, delay_ms=delay_ms, reason=reason)

    async def _hand_back(self, deliveries: list[AsyncDelivery]) -> None:
        """Return deliveries that were fetched but never handed to the application
        (a closed subscription's buffer, a cancelled receive): any member of the
        group can claim them at once, and no attempt is counted for them, since no
        handler saw them."""
        if deliveries:
            with contextlib.suppress(StaleDelivery):  # their leases ran out: back already
                await self._send_back(deliveries, "return")
        self._mark(deliveries)

    async def _send_back(
        self,
        deliveries: Sequence[AsyncDelivery],
        how: str | None,
        *,
        delay_ms: int = 0,
        reason: str | None = None,
    ) -> None:
        """Requeue (``"requeue"``), requeue after ``delay_ms`` (``"delay"``), return
        uncounted (``"return"``) or dead-letter (``None``, with ``reason`` or the usual
        one) ``deliveries``, one script each, pipelined."""
        requeue = how is not None
        async with self._lease_lock:
            self._keeper.drop(deliveries)
        limit = self.options.max_deliveries
        flag = "10" if self.options.delete_acked else "00"
        unconfirmed: dict[str, int] = {}
        try:
            calls = []
            for delivery in deliveries:
                receipt: StreamReceipt = delivery.receipt
                topic = delivery.subscription.topic
                args: list[Any] = [receipt.group, receipt.consumer, receipt.entry_id]
                if how == "return" or (requeue and (limit is None or delivery.attempt < limit)):
                    args += [how, flag]
                    if how == "delay":
                        args += [delay_ms, PARKING]
                else:
                    why = reason or ("rejected" if not requeue else "max_deliveries")
                    fields = self._dead_fields(
                        topic, receipt.entry_id, delivery.message, why, delivery.attempt
                    )
                    args += ["dead", flag, *fields]
                dlq = self._keys.topic(self.dead_letter_topic(topic))
                delayed = self._keys.topic(topic, "delayed", receipt.group)
                wake = self._keys.topic(topic, "wake", receipt.group)
                lost = self._keys.topic(topic, "lost")
                calls.append((self._scripts.nack, [receipt.key, dlq, delayed, wake, lost], args))
            try:
                replies = await self._run_settling(calls, flags_at=4, unconfirmed=unconfirmed)
            except IncompatibleTopic as exc:  # which key, of which topic: named
                for topic, group in dict.fromkeys(
                    (d.subscription.topic, d.receipt.group) for d in deliveries
                ):
                    named = await self._wrong_key(topic, group)
                    if named is not None:
                        raise named from exc
                raise
        except BaseException:
            # Failed, or cancelled (applied or not): renewed again, to be settled
            # again. A hand-back's are not: nobody will settle them, and their leases
            # run out for another member to claim.
            if how != "return":
                self._keeper.hold(d for d in deliveries if not d.settled)
            raise
        if how == "delay":
            # This consumer looks for it when it is due (others within their poll).
            due = time.monotonic() + delay_ms / 1000
            for delivery in deliveries:
                state: StreamState = delivery.subscription.state
                if due < state.release_at:
                    state.release_at, state.release_due = due, True
        elif requeue:
            for delivery in deliveries:
                # A requeued entry waits to be reclaimed: the next fetch looks at once.
                state = delivery.subscription.state
                state.claim_at = 0.0
                if how == "return":  # from the start: before the entries after them
                    state.rewind = True
        stale = [d for d, done in zip(deliveries, replies, strict=True) if not done]
        if unconfirmed:  # applied on the master: nothing left to renew
            raise self._unconfirmed("nack", deliveries, unconfirmed, stale)
        if stale:
            raise StaleDelivery(stale, "another consumer claimed it after its lease ran out")

    def _dead_fields(
        self, topic: str, entry_id: str, message: Message, reason: str, deliveries: int
    ) -> list[Any]:
        dead = dataclasses.replace(
            message,
            topic=self.dead_letter_topic(topic),
            headers={
                **message.headers,
                "x-dead-letter-reason": reason,
                "x-original-topic": topic,
                "x-deliveries": str(deliveries),
            },
        )
        fields = encode_fields(dead)
        if self.options.body_field != "body":
            fields[self.options.body_field] = fields.pop("body")
        fields[ORIGINAL_ENTRY_FIELD] = entry_id
        return [item for pair in fields.items() for item in pair]
