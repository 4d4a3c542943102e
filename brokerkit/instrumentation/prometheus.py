"""Prometheus metrics for brokerkit: message counters, handling time, topic gauges.

Install the extra, ``pip install "pybrokerkit[prometheus]"``.

**In an application** (a publisher, a consumer, a worker)::

    from brokerkit.instrumentation.prometheus import BrokerkitMetrics

    BrokerkitMetrics().install()     # counters on prometheus_client's default registry
    prometheus_client.start_http_server(9100)

counts, from the message hooks, in this process (labels ``topic``, and ``group`` for
consumers):

- ``brokerkit_messages_published_total{topic}``
- ``brokerkit_messages_delivered_total{topic,group}``: handed to the application
- ``brokerkit_messages_acked_total{topic,group}``
- ``brokerkit_messages_nacked_total{topic,group}``
- ``brokerkit_messages_retried_total{topic,group}``: nacked to be delivered again
- ``brokerkit_messages_dead_lettered_total{topic,group,reason}``: as far as this
  process knows it; ``reason`` is one of :data:`DEAD_LETTER_REASONS` only:
  ``rejected`` (a nack without requeue), ``max_deliveries`` (a nack at
  ``max_deliveries``), or ``custom`` (the nacking code gave its own reason, as the
  worker does with the handler's error: that text is in the dead letter's
  ``x-dead-letter-reason`` header, never in a label, so it cannot grow the series)
- ``brokerkit_lease_losses_total{topic,group}``: a settlement refused as stale
- ``brokerkit_handler_duration_seconds{topic,group,outcome}``: a histogram of the time
  from handing a delivery to the application to its end (a worker's handler, or the
  settlement, or the ``consume`` loop moving on).

**For a broker** (an exporter process, ``brokerkit exporter URL --port 9108``):
:class:`TopicCollector` reads ``inspect`` of each topic on every scrape and reports
``brokerkit_topic_length``, ``brokerkit_topic_in_flight``,
``brokerkit_topic_dead_letters``, ``brokerkit_topic_scheduled`` (held for a due time),
``brokerkit_topic_oldest_waiting_age_seconds``,
``brokerkit_topic_oldest_in_flight_age_seconds`` (by ``topic``) and
``brokerkit_topic_consumer_lag`` and ``brokerkit_topic_pending`` (by ``topic`` and
``group``), plus ``brokerkit_topic_up`` (1 if the topic was inspected, 0 if that failed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from brokerkit._capabilities import Capability
from brokerkit._hooks import get_plugin_manager
from brokerkit._logging import log_fields
from brokerkit.exceptions import BrokerError
from brokerkit.hookspecs import hookimpl

__all__ = ["DEAD_LETTER_REASONS", "BrokerkitMetrics", "TopicCollector"]

log = logging.getLogger("brokerkit.instrumentation")

_STARTED = "prometheus.started"

#: The values of the dead-letter counter's ``reason`` label.
DEAD_LETTER_REASONS = ("rejected", "max_deliveries", "custom")


def _labels(delivery: Any) -> tuple[str, str]:
    return delivery.topic, delivery.subscription.group


class BrokerkitMetrics:
    """The message counters and the handling-time histogram, fed by the message hooks.

    :param registry: where the metrics live (prometheus_client's default registry
        when omitted).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        where = REGISTRY if registry is None else registry
        by_group = ("topic", "group")
        self.published = Counter(
            "brokerkit_messages_published", "Messages published.", ("topic",), registry=where
        )
        self.delivered = Counter(
            "brokerkit_messages_delivered",
            "Deliveries handed to the application.",
            by_group,
            registry=where,
        )
        self.acked = Counter(
            "brokerkit_messages_acked", "Deliveries acked.", by_group, registry=where
        )
        self.nacked = Counter(
            "brokerkit_messages_nacked", "Deliveries nacked.", by_group, registry=where
        )
        self.retried = Counter(
            "brokerkit_messages_retried",
            "Deliveries nacked to be delivered again.",
            by_group,
            registry=where,
        )
        self.dead_lettered = Counter(
            "brokerkit_messages_dead_lettered",
            "Deliveries sent to the dead-letter topic by this process.",
            (*by_group, "reason"),
            registry=where,
        )
        self.lease_losses = Counter(
            "brokerkit_lease_losses",
            "Settlements refused because the delivery's lease had run out.",
            by_group,
            registry=where,
        )
        self.handler_duration = Histogram(
            "brokerkit_handler_duration_seconds",
            "Time from handing a delivery to the application to the end of its handling.",
            (*by_group, "outcome"),
            registry=where,
        )
        self._installed = False

    def install(self) -> BrokerkitMetrics:
        """Start counting (register the hooks); returns self."""
        if not self._installed:
            get_plugin_manager().register(self)
            self._installed = True
        return self

    def uninstall(self) -> None:
        """Stop counting; the metrics keep their values."""
        if self._installed:
            get_plugin_manager().unregister(self)
            self._installed = False

    @hookimpl
    def brokerkit_publish_end(
        self, topic: str, messages: Sequence[Any], error: BaseException | None
    ) -> None:
        if error is None and messages:
            self.published.labels(topic).inc(len(messages))

    @hookimpl
    def brokerkit_deliver_start(self, delivery: Any, scope: dict[str, Any]) -> None:
        self.delivered.labels(*_labels(delivery)).inc()
        scope[_STARTED] = time.perf_counter()

    @hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str, scope: dict[str, Any]) -> None:
        started = scope.get(_STARTED)
        if started is not None:
            elapsed = time.perf_counter() - started
            self.handler_duration.labels(*_labels(delivery), outcome).observe(elapsed)

    @hookimpl
    def brokerkit_on_ack(self, deliveries: Sequence[Any]) -> None:
        for delivery in deliveries:
            self.acked.labels(*_labels(delivery)).inc()

    @hookimpl
    def brokerkit_on_nack(self, deliveries: Sequence[Any], requeue: bool) -> None:
        for delivery in deliveries:
            self.nacked.labels(*_labels(delivery)).inc()
        broker = deliveries[0].broker if deliveries else None
        if requeue and broker is not None and Capability.ACK in broker.capabilities:
            # (without ACK a nack only marks a delivery settled: nothing comes again)
            limit = broker.options.max_deliveries
            for delivery in deliveries:
                if limit is None or delivery.attempt < limit:
                    self.retried.labels(*_labels(delivery)).inc()

    @hookimpl
    def brokerkit_on_dead_letter(self, deliveries: Sequence[Any], reason: str) -> None:
        # A caller's own reason is free text: a label of it would make one series per
        # distinct text, so it counts as "custom".
        label = reason if reason in DEAD_LETTER_REASONS else "custom"
        for delivery in deliveries:
            self.dead_lettered.labels(*_labels(delivery), label).inc()

    @hookimpl
    def brokerkit_on_lease_lost(self, deliveries: Sequence[Any]) -> None:
        for delivery in deliveries:
            self.lease_losses.labels(*_labels(delivery)).inc()


class TopicCollector(Collector):
    """Gauges of topics, from ``broker.inspect`` on every scrape.

    :param broker: an open sync :class:`~brokerkit.Broker`.
    :param topics: the topics to report, or a callable that returns them on each
        scrape (such as ``broker.topics``, to follow every topic the broker has).
    """

    def __init__(self, broker: Any, topics: Iterable[str] | Callable[[], Iterable[str]]) -> None:
        self.broker = broker
        self._topics = topics if callable(topics) else tuple(topics)

    def _names(self) -> list[str]:
        topics = self._topics
        return sorted(topics() if callable(topics) else topics)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        def gauge(name: str, doc: str, labels: Sequence[str] = ("topic",)) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"brokerkit_topic_{name}", doc, labels=labels)

        up = gauge("up", "1 if the topic was inspected on this scrape, 0 if that failed.")
        length = gauge("length", "Messages stored for the topic (waiting, or kept for replay).")
        in_flight = gauge("in_flight", "Deliveries handed out and not yet settled.")
        dead = gauge("dead_letters", "Messages in the topic's dead-letter topic.")
        held = gauge("scheduled", "Messages held for a due time (delayed publishes, retries).")
        waiting_age = gauge(
            "oldest_waiting_age_seconds", "Age of the oldest message not yet delivered."
        )
        flight_age = gauge(
            "oldest_in_flight_age_seconds", "Seconds the oldest unsettled delivery has been out."
        )
        lag = gauge("consumer_lag", "Messages a group has not been handed yet.", ("topic", "group"))
        pending = gauge(
            "pending", "Deliveries of a group handed out, not settled.", ("topic", "group")
        )
        try:
            names = self._names()
        except BrokerError as exc:
            log.warning(
                "could not list the topics of %s: %s", self.broker.url, exc, extra=log_fields()
            )
            names = []
        for topic in names:
            try:
                info = self.broker.inspect(topic)
            except BrokerError as exc:
                log.warning("could not inspect %r: %s", topic, exc, extra=log_fields(topic))
                up.add_metric([topic], 0)
                continue
            up.add_metric([topic], 1)
            length.add_metric([topic], info.length)
            in_flight.add_metric([topic], info.in_flight)
            dead.add_metric([topic], info.dead_lettered)
            held.add_metric([topic], info.scheduled)
            waiting = getattr(info, "oldest_waiting_age", None)
            if waiting is not None:
                waiting_age.add_metric([topic], waiting)
            if info.oldest_in_flight_age is not None:
                flight_age.add_metric([topic], info.oldest_in_flight_age)
            for group in info.groups:
                pending.add_metric([topic, group.name], group.pending)
                if group.lag is not None:
                    lag.add_metric([topic, group.name], group.lag)
        yield from (up, length, in_flight, dead, held, waiting_age, flight_age, lag, pending)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without this, registering would run collect() (an inspect of every topic).
        return iter(())
