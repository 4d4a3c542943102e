"""A durable work queue in one SQLite file, shared by every process that opens it.

``sqlite:///queue.db`` (relative) or ``sqlite:////var/lib/app/queue.db`` (absolute).
One table holds every message; a delivery leases a row by writing a fresh receipt and
a deadline into it, so an ack or nack with an old receipt (after the lease ran out and
the row went to another consumer) touches nothing and raises StaleDelivery. Every
consumer of a topic competes for its rows: groups are accepted but all compete.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from brokerkit import (
    Broker,
    BrokerURL,
    Capability,
    Delivery,
    GroupInfo,
    InvalidURL,
    Message,
    StaleDelivery,
    Subscription,
    TopicInfo,
)
from brokerkit.exceptions import ConnectionFailed

__all__ = ["SQLiteBroker"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS brokerkit_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    id TEXT NOT NULL,
    payload BLOB NOT NULL,
    content_type TEXT NOT NULL,
    headers TEXT NOT NULL,
    published_at REAL NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    deadline REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS brokerkit_by_topic ON brokerkit_messages (topic, deadline, seq);
"""
#: How often a waiting fetch looks again for new rows.
_POLL = 0.02


class SQLiteBroker(Broker):
    """A work queue in a SQLite file: persistent, acked, competing, ordered, with
    dead letters. Leases are judged by the wall clock of each process."""

    schemes: ClassVar[tuple[str, ...]] = ("sqlite",)
    capabilities: ClassVar[Capability] = (
        Capability.PERSISTENT
        | Capability.ACK
        | Capability.COMPETING
        | Capability.ORDERED
        | Capability.DEAD_LETTER
    )

    def __init__(self, url: BrokerURL, options: Any) -> None:
        super().__init__(url, options)
        path = url.path[1:] if url.path.startswith("/") else url.path
        if url.host or not path:
            raise InvalidURL(
                f"{url} names no file; write sqlite:///relative.db or sqlite:////absolute.db"
            )
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConnectionFailed(f"cannot open the SQLite queue {url}: {exc}") from exc
        self._db_lock = threading.Lock()

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]] = ((),)) -> int:
        """Run ``sql`` once per row in one immediate transaction; return rows changed."""
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                changed = sum(self._db.execute(sql, row).rowcount for row in rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return changed

    # -- primitives ---------------------------------------------------------------

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        self._write(
            "INSERT INTO brokerkit_messages (topic, id, payload, content_type, headers, "
            "published_at) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    topic,
                    m.id,
                    m.payload,
                    m.content_type,
                    json.dumps(dict(m.headers)),
                    m.published_at,
                )
                for m in messages
            ],
        )

    def _subscribe(self, subscription: Subscription) -> None:
        """Nothing to prepare: rows wait in the table for whoever asks."""

    def _fetch(
        self, subscription: Subscription, max_messages: int, timeout: float
    ) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while True:
            fetched = self._lease(subscription, max_messages)
            if fetched or subscription.closed or time.monotonic() >= deadline:
                return fetched
            time.sleep(min(_POLL, max(deadline - time.monotonic(), 0)))

    def _lease(self, subscription: Subscription, limit: int) -> list[Delivery]:
        now = time.time()
        receipt = uuid.uuid4().hex
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._dead_letter_expired(subscription.topic, now)
                rows = self._db.execute(
                    "SELECT seq FROM brokerkit_messages WHERE topic = ? AND deadline <= ? "
                    "ORDER BY seq LIMIT ?",
                    (subscription.topic, now, limit),
                ).fetchall()
                leased = []
                for (seq,) in rows:
                    row = self._db.execute(
                        "UPDATE brokerkit_messages SET deliveries = deliveries + 1, "
                        "receipt = ?, deadline = ? WHERE seq = ? RETURNING "
                        "id, payload, content_type, headers, published_at, deliveries",
                        (f"{receipt}-{seq}", now + self.options.visibility_timeout, seq),
                    ).fetchone()
                    leased.append((*row, seq))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return [
            Delivery(
                Message(id_, subscription.topic, payload, ctype, json.loads(headers), published),
                subscription=subscription,
                attempt=attempt,
                receipt=(seq, f"{receipt}-{seq}"),
            )
            for id_, payload, ctype, headers, published, attempt, seq in leased
        ]

    def _dead_letter_expired(self, topic: str, now: float) -> None:
        """Rows whose lease ran out on their last allowed delivery go to the DLQ."""
        limit = self.options.max_deliveries
        if limit is None:
            return
        for (seq,) in self._db.execute(
            "SELECT seq FROM brokerkit_messages WHERE topic = ? AND receipt IS NOT NULL "
            "AND deadline <= ? AND deliveries >= ?",
            (topic, now, limit),
        ).fetchall():
            self._move_to_dead_letters(seq, "max_deliveries")

    def _move_to_dead_letters(self, seq: int, reason: str) -> None:
        topic, headers, deliveries = self._db.execute(
            "SELECT topic, headers, deliveries FROM brokerkit_messages WHERE seq = ?", (seq,)
        ).fetchone()
        marked = {
            **json.loads(headers),
            "x-dead-letter-reason": reason,
            "x-original-topic": topic,
            "x-deliveries": str(deliveries),
        }
        # A new row, so that the dead-letter topic keeps its own arrival order.
        self._db.execute(
            "INSERT INTO brokerkit_messages (topic, id, payload, content_type, headers, "
            "published_at) SELECT ?, id, payload, content_type, ?, published_at "
            "FROM brokerkit_messages WHERE seq = ?",
            (self.dead_letter_topic(topic), json.dumps(marked), seq),
        )
        self._db.execute("DELETE FROM brokerkit_messages WHERE seq = ?", (seq,))

    def _settle_rows(self, deliveries: Sequence[Delivery], settle: Any) -> None:
        """Call ``settle(seq, delivery)`` for each delivery that still holds its lease."""
        stale = []
        now = time.time()
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for delivery in deliveries:
                    seq, receipt = delivery.receipt
                    held = self._db.execute(
                        "SELECT 1 FROM brokerkit_messages WHERE seq = ? AND receipt = ? "
                        "AND deadline > ?",
                        (seq, receipt, now),
                    ).fetchone()
                    if held:
                        settle(seq, delivery)
                    else:
                        stale.append(delivery)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        if stale:
            raise StaleDelivery(stale)

    def _ack(self, deliveries: Sequence[Delivery]) -> None:
        self._settle_rows(
            deliveries,
            lambda seq, _: self._db.execute("DELETE FROM brokerkit_messages WHERE seq = ?", (seq,)),
        )

    def _nack(self, deliveries: Sequence[Delivery], requeue: bool) -> None:
        self._nack_with(deliveries, requeue, None, None)

    def _nack_with(
        self,
        deliveries: Sequence[Delivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        # No DELAY, so the core never passes a delay; ``reason`` replaces the generic one.
        limit = self.options.max_deliveries

        def settle(seq: int, delivery: Delivery) -> None:
            if not requeue:
                self._move_to_dead_letters(seq, reason or "rejected")
            elif limit is not None and delivery.attempt >= limit:
                self._move_to_dead_letters(seq, reason or "max_deliveries")
            else:
                self._db.execute(
                    "UPDATE brokerkit_messages SET receipt = NULL, deadline = 0 WHERE seq = ?",
                    (seq,),
                )

        self._settle_rows(deliveries, settle)

    def _extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        deadline = time.time() + seconds
        self._settle_rows(
            deliveries,
            lambda seq, _: self._db.execute(
                "UPDATE brokerkit_messages SET deadline = ? WHERE seq = ?", (deadline, seq)
            ),
        )

    def _inspect(self, topic: str) -> TopicInfo:
        now = time.time()
        with self._db_lock:
            waiting, in_flight, oldest = self._db.execute(
                "SELECT SUM(deadline <= ?), SUM(deadline > ?), "
                "MIN(CASE WHEN deadline > ? THEN deadline END) "
                "FROM brokerkit_messages WHERE topic = ?",
                (now, now, now, topic),
            ).fetchone()
            (dead,) = self._db.execute(
                "SELECT COUNT(*) FROM brokerkit_messages WHERE topic = ?",
                (self.dead_letter_topic(topic),),
            ).fetchone()
        age = None if oldest is None else max(now - (oldest - self.options.visibility_timeout), 0)
        # One queue per topic: every group name reads it, as the one group "default".
        groups: tuple[GroupInfo, ...] = ()
        if waiting or in_flight:
            groups = (GroupInfo("default", pending=in_flight or 0, lag=waiting or 0),)
        return TopicInfo(topic, waiting or 0, in_flight or 0, dead, age, groups)

    def _purge(self, topic: str) -> int:
        return self._write(
            "DELETE FROM brokerkit_messages WHERE topic = ? AND deadline <= ?",
            [(topic, time.time())],
        )

    def _close(self) -> None:
        with self._db_lock:
            self._db.close()
