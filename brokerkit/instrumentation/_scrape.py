"""One scrape of a :class:`~brokerkit.instrumentation.prometheus.TopicCollector`: the
reads of the broker, in a thread of their own so that the scrape answers in time
(:class:`_Reading`), and the gauges it reports (:class:`_Families`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily

from brokerkit._logging import log_fields
from brokerkit.exceptions import BrokerClosed, BrokerError, ConnectionFailed
from brokerkit.worker._error_text import error_text

if TYPE_CHECKING:
    from brokerkit.instrumentation.prometheus import TopicCollector

log = logging.getLogger("brokerkit.instrumentation")


class _Families:
    """The gauges of one scrape."""

    def __init__(self, *, listing: bool) -> None:
        def gauge(name: str, doc: str, labels: Sequence[str] = ("topic",)) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"brokerkit_topic_{name}", doc, labels=labels)

        self.listed: GaugeMetricFamily | None = (
            GaugeMetricFamily(
                "brokerkit_topics_listed",
                "1 if the topics were listed on this scrape, 0 if that failed (the topics "
                "of the last listing are then reported down).",
                labels=(),
            )
            if listing
            else None
        )
        self.up = gauge("up", "1 if the topic was inspected on this scrape, 0 if that failed.")
        self.length = gauge(
            "length", "Messages stored for the topic (waiting, or kept for replay)."
        )
        self.in_flight = gauge("in_flight", "Deliveries handed out and not yet settled.")
        self.dead = gauge("dead_letters", "Dead letters of the topic not yet read and acked.")
        self.held = gauge("scheduled", "Messages held for a due time (delayed publishes, retries).")
        self.waiting_age = gauge(
            "oldest_waiting_age_seconds", "Age of the oldest message not yet delivered."
        )
        self.flight_age = gauge(
            "oldest_in_flight_age_seconds",
            "Seconds since the oldest unsettled delivery was handed out, or since its "
            "lease was last renewed on redis+stream.",
        )
        self.lag = gauge(
            "consumer_lag", "Messages a group has not been handed yet.", ("topic", "group")
        )
        self.pending = gauge(
            "pending", "Deliveries of a group handed out, not settled.", ("topic", "group")
        )

    def add(self, topic: str, info: Any) -> None:
        """The samples of a topic inspected."""
        self.up.add_metric([topic], 1)
        self.length.add_metric([topic], info.length)
        self.in_flight.add_metric([topic], info.in_flight)
        self.dead.add_metric([topic], info.dead_lettered)
        self.held.add_metric([topic], info.scheduled)
        waiting = getattr(info, "oldest_waiting_age", None)
        if waiting is not None:
            self.waiting_age.add_metric([topic], waiting)
        if info.oldest_in_flight_age is not None:
            self.flight_age.add_metric([topic], info.oldest_in_flight_age)
        for group in info.groups:
            self.pending.add_metric([topic, group.name], group.pending)
            if group.lag is not None:
                self.lag.add_metric([topic, group.name], group.lag)

    def all(self) -> Iterator[GaugeMetricFamily]:
        if self.listed is not None:
            yield self.listed
        yield from (
            self.up,
            self.length,
            self.in_flight,
            self.dead,
            self.held,
            self.waiting_age,
            self.flight_age,
            self.lag,
            self.pending,
        )


class _Reading:
    """One scrape's reads of the broker, in a thread of its own, so that the scrape
    can answer when its time is up while a read still waits on the server (the read
    then ends on its own, and its results are dropped)."""

    def __init__(self, collector: TopicCollector) -> None:
        self._collector = collector
        self._lock = threading.Lock()
        self._stopped = False
        self.done = threading.Event()
        self._names: list[str] | None = None
        self._listed: bool | None = None
        #: Each topic read: its TopicInfo, or None if its inspect failed.
        self._found: dict[str, Any] = {}

    def stop(self) -> tuple[list[str] | None, bool | None, dict[str, Any]]:
        """Read no more; what was read: the topics (None while listing), whether the
        listing succeeded (None: named topics, no listing), the topics read."""
        with self._lock:
            self._stopped = True
            return self._names, self._listed, dict(self._found)

    def run(self) -> None:
        try:
            self._read()
        finally:
            self.done.set()

    def _read(self) -> None:
        collector, broker = self._collector, self._collector.broker
        listing = callable(collector._topics)
        try:
            names, listed = collector._names(), True if listing else None
        except Exception as exc:
            log.warning(
                "could not list the topics of %s; the %d topic(s) of the last listing are "
                "reported down: %s",
                *(broker.url, len(collector._listed), error_text(exc)),
                exc_info=None if isinstance(exc, BrokerError) else exc,
                extra=log_fields(),
            )
            names, listed = list(collector._listed), False
        with self._lock:
            self._names, self._listed = names, listed
        if listed is False:  # inspecting what could not be listed would fail the same way
            return
        for number, topic in enumerate(names):
            with self._lock:
                if self._stopped:
                    return
            try:
                info = broker.inspect(topic)
            except Exception as exc:
                log.warning(
                    "could not inspect %r: %s",
                    topic,
                    error_text(exc),
                    exc_info=None if isinstance(exc, BrokerError) else exc,
                    extra=log_fields(topic),
                )
                info = None
                gone = isinstance(exc, (ConnectionFailed, BrokerClosed))
            else:
                gone = False
            with self._lock:
                self._found[topic] = info
            rest = names[number + 1 :]
            if gone and rest:
                log.warning(
                    "%s cannot be reached: %d more topic(s) reported down, not inspected: %s",
                    *(broker.url, len(rest), _some(rest)),
                    extra=log_fields(),
                )
                return


def _some(topics: Sequence[str], shown: int = 5) -> str:
    """A few of ``topics``, for a log line."""
    more = f" (and {len(topics) - shown} more)" if len(topics) > shown else ""
    return ", ".join(repr(t) for t in topics[:shown]) + more
