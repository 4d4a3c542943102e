"""Prometheus metrics for brokerkit: message counters, handling time, topic gauges.

Install the extra, ``pip install "pybrokerkit[prometheus]"``.

**In an application** (a publisher, a consumer, a worker)::

    from brokerkit.instrumentation.prometheus import BrokerkitMetrics

    BrokerkitMetrics().install()     # counters on prometheus_client's default registry
    prometheus_client.start_http_server(9100)

counts, from the message hooks, in this process (labels ``topic``, and ``group`` for
consumers; a pattern subscription's deliveries are counted under its pattern, such as
``chat:*``, rather than one series per topic it matched):

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
- ``brokerkit_lease_losses_total{topic,group}``: leases lost, once per delivery (a
  settlement or an extension refused as stale, a renewal that found the lease gone)
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
``group``), plus ``brokerkit_topic_up`` (1 if the topic was inspected, 0 if that failed
or the scrape's ``timeout`` ran out first) and, when it follows a listing of the
topics (``broker.topics``), ``brokerkit_topics_listed`` (1 if the listing succeeded; 0:
the topics of the last listing are reported down).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from brokerkit.instrumentation import _missing_extra

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:
    raise _missing_extra(exc, __name__, "prometheus") from exc

from brokerkit._capabilities import Capability
from brokerkit._error_text import value_text
from brokerkit._hooks import get_plugin_manager
from brokerkit._logging import log_fields
from brokerkit._schedule import finite_seconds
from brokerkit.exceptions import InvalidOption
from brokerkit.hookspecs import hookimpl
from brokerkit.instrumentation._scrape import _Families, _Reading, _some

__all__ = ["DEAD_LETTER_REASONS", "BrokerkitMetrics", "TopicCollector"]

log = logging.getLogger("brokerkit.instrumentation")

_STARTED = "prometheus.started"

#: The values of the dead-letter counter's ``reason`` label.
DEAD_LETTER_REASONS = ("rejected", "max_deliveries", "custom")


def _labels(delivery: Any) -> tuple[str, str]:
    """The ``topic`` and ``group`` labels of a delivery: a pattern subscription's are
    counted under its pattern, not under each topic it matched (which any publisher
    chooses: on redis+pubsub any bytes), so that the series stay as few as the
    subscriptions."""
    subscription = delivery.subscription
    topic = subscription.topic if subscription.pattern else delivery.topic
    return topic, subscription.group


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
            "Leases lost (a settlement or an extension refused as stale, a renewal that "
            "found the lease gone), once per delivery.",
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
        """Stop counting; the metrics keep their values. A delivery handed out
        before still records its handling time when it ends; its ack or nack, coming
        after this, is not counted."""
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

    A scrape answers within ``timeout`` seconds whatever the broker does: a topic not
    inspected by then is reported down (``brokerkit_topic_up`` 0), and so is every
    topic after one whose inspect failed for want of the server (they are not tried
    against a server that is gone). When listing the topics fails (or takes longer),
    ``brokerkit_topics_listed`` is 0 and the topics of the last listing that succeeded
    are reported down, so that an alert on ``brokerkit_topic_up == 0`` fires. While
    the reads of a scrape before still wait on the broker (a server that does not
    answer), a scrape starts no reads of its own and reports every topic down.

    Its metric families are described at registration, so a second collector on one
    registry is refused there (prometheus_client raises ``ValueError``): give each
    broker a registry (an exporter) of its own.

    :param broker: an open sync :class:`~brokerkit.Broker` (an asyncio service
        gives it one of its own, ``brokerkit.connect(url)``: a scrape is sync).
    :param topics: the topics to report, or a sync callable that returns them on
        each scrape (such as ``broker.topics``, to follow every topic the broker has);
        a topic named twice is reported once. A call that fails, or returns one name
        (a str) rather than a list, or a list holding something else than str (bytes,
        None), is a listing that failed.
    :param timeout: the longest a scrape waits for the broker, in seconds (above 0);
        keep it under the Prometheus ``scrape_timeout`` (10 s by default).
    :raises InvalidOption: ``broker`` is an asyncio broker (``brokerkit.aio``);
        ``topics`` is one name (a str), not a list of them, a list holding something
        else than str (bytes, None: a label of one would fail every scrape of the
        registry), or an async callable (``async_broker.topics``); or
        ``timeout`` is not a finite number of seconds above 0.
    """

    def __init__(
        self,
        broker: Any,
        topics: Iterable[str] | Callable[[], Iterable[str]],
        *,
        timeout: float = 5.0,
    ) -> None:
        if inspect.iscoroutinefunction(getattr(broker, "inspect", None)):
            # a scrape is sync: each inspect would be a coroutine, never awaited
            raise InvalidOption(
                f"TopicCollector reads a sync broker, not {type(broker).__name__} (its "
                "inspect is a coroutine): give it one from brokerkit.connect(url), to the "
                "same URL"
            )
        if isinstance(topics, (str, bytes, bytearray)):
            # one name: tuple("orders") would report the topics o, r, d, e, s
            raise InvalidOption(
                f"topics takes a list of topic names (or a callable), not one "
                f"{type(topics).__name__}: TopicCollector(broker, [{_name(topics)!r}])"
            )
        if callable(topics) and _is_async(topics):
            # a scrape is sync: each call would make a coroutine, never awaited
            raise InvalidOption(
                "topics takes a sync callable (such as the sync broker's topics), not "
                f"an async one ({_callable_name(topics)} returns a coroutine)"
            )
        seconds = finite_seconds(timeout)
        if seconds is None or seconds <= 0:
            raise InvalidOption(
                f"timeout must be a finite number of seconds above 0, got {timeout!r}"
            )
        self.broker = broker
        self.timeout = seconds
        # a topic named twice is reported (and inspected) once, as a listing names it
        self._topics = topics if callable(topics) else tuple(dict.fromkeys(_names_of(topics)))
        #: The topics of the last listing that succeeded (listing mode), set by the
        #: scrape that read it (a reading that ends after its scrape changes nothing).
        self._listed: tuple[str, ...] = ()
        self._lock = threading.Lock()
        #: The reading of the last scrape that started one (it may still run).
        self._reading: _Reading | None = None

    def _names(self) -> list[str]:
        topics = self._topics
        if not callable(topics):
            return sorted(set(topics))
        names: Any = topics()  # (what a user's callable returns: checked below)
        if isinstance(names, (str, bytes, bytearray)):
            # one name: set("orders") would report the topics d, e, o, r, s
            raise InvalidOption(
                f"the topics callable returned one {type(names).__name__}, "
                f"{_name(names)!r}, not a list of topic names"
            )
        if inspect.isawaitable(names):
            if inspect.iscoroutine(names):
                names.close()  # (no "never awaited" warning on each scrape)
            raise InvalidOption(
                f"the topics callable returned {type(names).__name__}, not a list of topic "
                "names: give it a sync one (such as the sync broker's topics)"
            )
        return sorted(set(_names_of(names, "the topics callable returned")))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = _Families(listing=callable(self._topics))
        deadline = time.monotonic() + self.timeout
        reading = self._start(deadline)
        if reading is None:  # the reading of a scrape before still waits on the broker
            listing = callable(self._topics)
            names = list(self._listed) if listing else self._names()
            listed, finished = (False if listing else None), False
            found: dict[str, Any] = {}
        else:
            finished = reading.done.wait(max(deadline - time.monotonic(), 0.0))
            names_read, listed, found = reading.stop()
            if names_read is None:  # still listing
                names, listed = list(self._listed), False
            else:
                names = names_read
                if listed:
                    self._listed = tuple(names)
        if families.listed is not None:  # (listing mode)
            families.listed.add_metric([], 1 if listed else 0)
        unread = [topic for topic in names if topic not in found]
        if not finished and unread:
            log.warning(
                "reading the topics of %s took more than %g s%s; %d topic(s) reported "
                "down, not inspected: %s",
                self.broker.url,
                self.timeout,
                "" if reading is not None else " (a scrape before still waits on it)",
                *(len(unread), _some(unread)),
                extra=log_fields(),
            )
        for topic in names:
            info = found.get(topic)
            if info is None:
                families.up.add_metric([topic], 0)
            else:
                families.add(topic, info)
        yield from families.all()

    def _start(self, deadline: float) -> _Reading | None:
        """A new reading of the broker, in a thread of its own; None when the reading
        of a scrape before still waits on the broker at ``deadline`` (a frozen server:
        one reading at a time, so that their threads do not pile up)."""
        while True:
            with self._lock:
                previous = self._reading
                if previous is None or previous.done.is_set():
                    self._reading = reading = _Reading(self)
                    threading.Thread(
                        target=reading.run, name="brokerkit-topic-collector", daemon=True
                    ).start()
                    return reading
            if not previous.done.wait(max(deadline - time.monotonic(), 0.0)):
                return None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # The families, without samples: registering runs no inspect, and the registry
        # can refuse a second collector of the same names.
        yield from _Families(listing=callable(self._topics)).all()


def _names_of(topics: Iterable[Any], given: str = "topics holds") -> list[str]:
    """``topics``, each a str; InvalidOption naming the first that is not (a label of
    bytes or None makes the registry's every scrape fail, not just this collector's)."""
    names = list(topics)
    for name in names:
        if not isinstance(name, str):
            raise InvalidOption(
                f"{given} a {type(name).__name__} ({value_text(name)}) among the topic names: "
                "each must be a str"
            )
    return names


def _is_async(function: Callable[..., Any]) -> bool:
    """Whether calling ``function`` makes a coroutine (an ``async def``, a bound async
    method, or an object whose ``__call__`` is one)."""
    call = type(function).__call__  # (an object's own async __call__)
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


def _callable_name(function: Callable[..., Any]) -> str:
    """The name of ``function`` for an error, ``AsyncBroker.topics`` or its repr."""
    name = getattr(function, "__qualname__", None)
    return name if isinstance(name, str) else repr(function)


def _name(topic: str | bytes | bytearray) -> str:
    """A topic name given as one str or bytes, as a str (for the error that refuses it)."""
    return topic if isinstance(topic, str) else bytes(topic).decode(errors="replace")
