"""OpenTelemetry tracing for brokerkit, after the messaging semantic conventions.

Install the extra, ``pip install "pybrokerkit[opentelemetry]"``, and instrument once,
as every OpenTelemetry instrumentation package does::

    from brokerkit.instrumentation.opentelemetry import BrokerkitInstrumentor

    BrokerkitInstrumentor().instrument()              # or instrument(tracer_provider=...)

(``opentelemetry-instrument`` finds it through the ``opentelemetry_instrumentor``
entry point.) From then on, in this process, for the sync and asyncio APIs alike:

- every ``publish`` / ``publish_many`` is a ``send <topic>`` span of kind PRODUCER,
  and the W3C trace context (``traceparent``, ``tracestate``, and baggage, as the
  global propagator writes them) goes into the headers of the messages it sends;
- every delivery handed to the application is a ``process <topic>`` span of kind
  CONSUMER (``process <pattern>`` for a pattern subscription's, such as
  ``process chat:*``: the topics a pattern matches are the publishers' choice), a
  child of the producer's span read from the message's headers (and linked to it;
  a root span when they hold no valid context: a malformed ``traceparent``, or a
  value longer than 8192 characters, which is not read; of a ``baggage`` header, the
  well-formed list-members alone are read, a malformed one left out silently, and a
  malformed ``tracestate`` is left out silently too, as OpenTelemetry drops it, unlogged),
  ended when the delivery is settled (or the ``consume`` loop moves on, or the
  worker's handler returns). A nack or a lost lease is an event on it; a
  dead letter, a lost lease, a failed publish or a handler's exception sets its
  status to ERROR (exceptions are recorded) and ``error.type``: the exception's
  qualified class name (``brokerkit.exceptions.SerializationError``,
  ``RuntimeError``), or, where none was raised, ``dead-letter`` or ``lease-lost``. An
  exception whose ``str()`` raises is recorded as ``<TypeName: str() failed>``, and
  its span ends all the same. An error that is, or was raised from or during, a
  validation error of pydantic's or msgspec's is recorded as the worker logs it: its
  event's message and stacktrace (every frame) tell each such error without the
  values it refused (``User: age: Input should be a valid integer, ...``), never
  pydantic's ``input_value=...``.

Attributes: ``messaging.system`` (``redis``, ``rabbitmq``, ``nats``, ``memory``,
``kombu``), ``messaging.destination.name`` (the delivery's own topic),
``messaging.destination.template`` (a pattern subscription's pattern),
``messaging.operation.name`` and ``messaging.operation.type`` (``send`` /
``process``), ``messaging.message.id``,
``messaging.batch.message_count`` (``publish_many`` of more than one),
``messaging.consumer.group.name``, ``messaging.client.id`` (the consumer's name),
``brokerkit.delivery.attempt`` (1 on first delivery; the conventions name no
system-neutral attribute for it), ``brokerkit.settlement`` (how it ended),
``server.address`` and ``server.port``.

A worker's handler (:class:`brokerkit.Worker`, :class:`brokerkit.aio.Worker`) runs in
its delivery's context laid over the context current where it runs (its thread or task,
when the handler starts), never in its place: the delivery's keys, what its headers
carried (the baggage, and whatever else the global propagator read, on an empty base) and
its consumer span as the current span, win; every other key of the current context stays
(the application's own values, a suppressed-instrumentation key, what another plugin's
handler context set before). What the handler publishes, and the spans it starts, are
children of ``process <topic>``, in the producer's trace, and ``baggage.get_baggage`` sees
the publisher's baggage, which a publish carries on. Baggage is one key: a message that
carried baggage replaces the current baggage whole (the handler sees what its publisher
sent, nothing of the receiver's mixed in), one that carried none leaves it as it is. A
message without a valid trace context still has a root ``process`` span, whatever span
is current. The context is not made current for a ``receive`` or a consume loop (a generator cannot
safely hold a context across the caller's code); to run the application's code in it
there, attach :func:`current_context` (``token = context.attach(current_context(delivery))``,
then ``context.detach(token)``), made the same way at each call;
``trace.use_span(current_span(delivery))`` makes the span current alone, without the
delivery's baggage.
"""

from __future__ import annotations

import functools
import re
import threading
import traceback
from collections.abc import Collection, Sequence
from contextvars import Token
from typing import Any

from brokerkit.instrumentation import _missing_extra

try:  # opentelemetry-api alone (another library's) lacks opentelemetry.instrumentation
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )
    from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
except ImportError as exc:
    raise _missing_extra(exc, __name__, "opentelemetry") from exc

import brokerkit
from brokerkit._hooks import HANDLER_CONTEXT, get_plugin_manager
from brokerkit.hookspecs import hookimpl
from brokerkit.worker._error_text import error_text
from brokerkit.worker._tracebacks import error_traceback, shows_values

__all__ = ["BrokerkitInstrumentor", "current_context", "current_span"]

_instruments = ("pybrokerkit >= 0.1",)
#: messaging.system by scheme (the backend family's name, else): the server's kind
_SYSTEMS = {
    "rediss": "redis",
    "kombu+amqp": "rabbitmq",
    "kombu+amqps": "rabbitmq",
    "kombu+pyamqp": "rabbitmq",
    "kombu+redis": "redis",
}
_SPAN = "otel.span"
_CONTEXT = "otel.context"
#: The longest header value the propagators read: W3C baggage's limit (8192 bytes;
#: ``traceparent`` and ``tracestate`` are shorter). A longer one is no trace context,
#: and is left out: OpenTelemetry's baggage propagator logs a malformed header whole,
#: so any publisher's 1 MB ``baggage`` was a 1 MB warning at every delivery.
_MAX_CONTEXT_VALUE = 8192

# W3C baggage (https://www.w3.org/TR/baggage/), as OpenTelemetry's propagator reads it:
# list-members ``key=value`` (optional whitespace around ``=``) with ``;``-separated
# properties ``key`` or ``key=value``; a key is a token, a value baggage-octets. The
# members of a header the propagator would warn of (each logged whole) are left out.
_OWS = r"[ \t]*"
_KEY = r"[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7a\x7c\x7e]+"
_VALUE = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+"
# unambiguous (no two adjacent parts can take the same character): linear time
_BAGGAGE_MEMBER = re.compile(
    rf"{_OWS}{_KEY}{_OWS}={_OWS}(?:{_VALUE}{_OWS})?"
    rf"(?:;{_OWS}{_KEY}{_OWS}(?:={_OWS}(?:{_VALUE}{_OWS})?)?)*"
)
#: OpenTelemetry's (W3C's) limits of a baggage list-member's length and of their number
_MAX_BAGGAGE_MEMBER = 4096
_MAX_BAGGAGE_MEMBERS = 180
# W3C trace context's tracestate list-member (https://www.w3.org/TR/trace-context/), as
# OpenTelemetry reads it: it drops a header with a malformed one, or with more than 32,
# and logs the member whole; here such a header is left out silently.
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_MAX_TRACESTATE_MEMBERS = 32


def _system(broker: Any) -> str:
    url = broker.url
    return _SYSTEMS.get(url.scheme) or _SYSTEMS.get(url.family) or url.family


def _server(broker: Any) -> dict[str, Any]:
    url = broker.url
    found: dict[str, Any] = {}
    if "memory" in url.scheme:  # memory://name: a name in this process, not a server
        return found
    if url.host:
        found["server.address"] = url.host.split(",")[0]
    if url.port is not None:
        found["server.port"] = url.port
    return found


def _error_type(error: BaseException) -> str:
    """``error.type`` of a failed operation: the exception's qualified class name
    (without a module for a built-in one, as Python prints it)."""
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _record_error(span: Span, error: BaseException) -> None:
    """Record ``error`` on ``span`` as an ``exception`` event, and set its status to
    ERROR with ``error.type``; never failing.

    The event is the one the SDK's ``record_exception`` makes (``exception.type``,
    ``exception.message``, ``exception.stacktrace``, ``exception.escaped``), but for
    an error whose print would quote the values a validation error of pydantic's or
    msgspec's refused (it is one, or was raised from or during one, or a group holds
    one: :func:`shows_values`) the event is made here, as the worker logs it: its
    text by :func:`error_text` and its traceback by :func:`error_traceback`, every
    frame kept. So it is for an error whose ``__str__`` raises (``record_exception``
    calls ``str`` on it unguarded). The status's description is ``Type: text``, that
    same text."""
    text = error_text(error)
    if shows_values(error):
        if span.is_recording():  # the masked print is not made for a sampled-out span
            _add_exception_event(span, error, text, error_traceback(error))
    else:
        try:
            span.record_exception(error)
        except Exception:
            try:
                stacktrace = "".join(traceback.format_exception(error))
            except Exception:
                stacktrace = ""
            _add_exception_event(span, error, text, stacktrace)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {text}"))
    span.set_attribute("error.type", _error_type(error))


def _add_exception_event(span: Span, error: BaseException, text: str, stacktrace: str) -> None:
    """The ``exception`` event ``record_exception`` adds (not escaped, as it says by
    default), with ``text`` and ``stacktrace`` for the error's own."""
    span.add_event(
        "exception",
        {
            "exception.type": _error_type(error),
            "exception.message": text,
            "exception.stacktrace": stacktrace,
            "exception.escaped": "False",
        },
    )


def _carrier(headers: Any) -> dict[str, str]:
    """The headers the propagators read a delivery's context from: those whose value
    is a str of at most :data:`_MAX_CONTEXT_VALUE` characters, ``baggage`` holding only
    its well-formed list-members (:func:`_baggage`; left out when none is), and
    ``tracestate`` left out unless well-formed (:func:`_tracestate_ok`)."""
    carrier = {
        key: value
        for key, value in headers.items()
        if isinstance(value, str) and len(value) <= _MAX_CONTEXT_VALUE
    }
    if "baggage" in carrier:
        baggage = _baggage(carrier.pop("baggage"))
        if baggage:
            carrier["baggage"] = baggage
    if "tracestate" in carrier and not _tracestate_ok(carrier["tracestate"]):
        del carrier["tracestate"]
    return carrier


def _tracestate_ok(header: str) -> bool:
    """Whether OpenTelemetry reads ``header`` as a tracestate without a warning: at most
    :data:`_MAX_TRACESTATE_MEMBERS` list-members, each well-formed (empty ones aside).
    It drops a malformed one whole, as brokerkit does, but logs its member whole too."""
    members = [m for m in (m.strip(" \t") for m in header.split(",")) if m]
    return len(members) <= _MAX_TRACESTATE_MEMBERS and all(
        _TRACESTATE_MEMBER.fullmatch(m) for m in members
    )


def _baggage(header: str) -> str:
    """The well-formed list-members of a ``baggage`` header (see :data:`_BAGGAGE_MEMBER`),
    the first :data:`_MAX_BAGGAGE_MEMBERS` of them, as a header: the others are left out
    silently, where OpenTelemetry's propagator logs each whole (a WARNING line of up to
    8 KB at every delivery of a hostile publisher's message)."""
    members = [
        member
        for member in _baggage_members(header)
        if len(member) <= _MAX_BAGGAGE_MEMBER and _BAGGAGE_MEMBER.fullmatch(member)
    ]
    return ",".join(members[:_MAX_BAGGAGE_MEMBERS])


def _baggage_members(header: str) -> list[str]:
    """``header`` split as OpenTelemetry splits baggage (``re.split(r"[ \\t]*,[ \\t]*")``:
    the spaces and tabs around each comma go), in linear time: that pattern retries
    ``[ \\t]*`` from each character of a long run of them with no comma (70 ms for a
    hostile 8 KB header)."""
    parts = header.split(",")
    for i in range(1, len(parts)):
        parts[i - 1] = parts[i - 1].rstrip(" \t")
        parts[i] = parts[i].lstrip(" \t")
    return parts


def current_span(delivery: Any) -> Span:
    """The ``process`` span of a delivery the application holds (a non-recording span
    when none is open: not instrumented, or already settled)."""
    scope = delivery._scope
    span = scope.get(_SPAN) if scope is not None else None
    return span if span is not None else trace.INVALID_SPAN


def current_context(delivery: Any) -> otel_context.Context:
    """The context a delivery the application holds is processed in, made at each call:
    the current context with the delivery's keys over it, those its headers carried
    (baggage, and the rest the global propagator reads) and its ``process`` span as the
    current span; the current context as it is when no span is open (not instrumented,
    or already settled). A worker's handler runs in it; elsewhere, attach it."""
    scope = delivery._scope
    found = scope.get(_CONTEXT) if scope is not None and scope.get(_SPAN) else None
    return _layered(found) if found is not None else otel_context.get_current()


def _layered(keys: otel_context.Context) -> otel_context.Context:
    """The current context with ``keys`` over it: a key of both is ``keys``' value whole
    (a message's baggage replaces the current baggage, not merged into it), every other
    key of the current context is kept."""
    return otel_context.Context({**otel_context.get_current(), **keys})


class _Attached:
    """The current context with a delivery's keys over it (:func:`_layered`, made when
    the handler starts, in its own thread or task) made the current context while a
    handler runs, then detached (it neither records nor suppresses the handler's error:
    brokerkit_deliver_end records it)."""

    def __init__(self, keys: otel_context.Context) -> None:
        self._keys = keys
        self._token: Token[otel_context.Context] | None = None

    def __enter__(self) -> None:
        self._token = otel_context.attach(_layered(self._keys))

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)


class _TracingPlugin:
    """The hook implementations; one per :meth:`BrokerkitInstrumentor.instrument`."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    @hookimpl
    def brokerkit_publish_start(
        self, broker: Any, topic: str, headers: dict[str, str], count: int, scope: dict[str, Any]
    ) -> None:
        attributes: dict[str, Any] = {
            "messaging.system": _system(broker),
            "messaging.destination.name": topic,
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            **_server(broker),
        }
        if count > 1:
            attributes["messaging.batch.message_count"] = count
        span = self.tracer.start_span(
            f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        scope[_SPAN] = span
        propagate.inject(headers, context=trace.set_span_in_context(span))

    @hookimpl
    def brokerkit_publish_end(
        self, messages: Sequence[Any], error: BaseException | None, scope: dict[str, Any]
    ) -> None:
        span: Span = scope[_SPAN]
        try:  # the span ends whatever recording on it raises
            if len(messages) == 1:
                span.set_attribute("messaging.message.id", messages[0].id)
            if error is not None:
                _record_error(span, error)
        finally:
            span.end()

    @hookimpl
    def brokerkit_deliver_start(self, delivery: Any, scope: dict[str, Any]) -> None:
        subscription = delivery.subscription
        # what the headers carry alone, on an empty base (the caller's baggage is no
        # message's: a baggage propagator given none reads onto the current baggage);
        # it is laid over the current context where it is used (_layered)
        parent = propagate.extract(_carrier(delivery.headers), context=otel_context.Context())
        producer = trace.get_current_span(parent).get_span_context()
        links = [Link(producer)] if producer.is_valid else []
        # A pattern subscription's topics are the publishers' choice (any bytes on
        # redis+pubsub): its span is named by the pattern, its template, as the
        # conventions want a span name of low cardinality.
        template = {"messaging.destination.template": subscription.topic}
        span = self.tracer.start_span(
            f"process {subscription.topic if subscription.pattern else delivery.topic}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": _system(subscription.broker),
                "messaging.destination.name": delivery.topic,
                **(template if subscription.pattern else {}),
                "messaging.operation.name": "process",
                "messaging.operation.type": "process",
                "messaging.message.id": delivery.id,
                "messaging.consumer.group.name": subscription.group,
                "messaging.client.id": subscription.consumer,
                "brokerkit.delivery.attempt": delivery.attempt,
                **_server(subscription.broker),
            },
        )
        scope[_SPAN] = span
        # the delivery's keys: the extracted ones (its baggage too) and the span; a
        # handler runs in them laid over its current context (see HANDLER_CONTEXT)
        keys = trace.set_span_in_context(span, parent)
        scope[_CONTEXT] = keys
        scope.setdefault(HANDLER_CONTEXT, []).append(functools.partial(_Attached, keys))

    @hookimpl
    def brokerkit_deliver_end(
        self, outcome: str, error: BaseException | None, scope: dict[str, Any]
    ) -> None:
        span: Span | None = scope.get(_SPAN)
        if span is None:
            return
        try:  # the span ends whatever recording on it raises
            span.set_attribute("brokerkit.settlement", outcome)
            if outcome != "ack":
                span.add_event(outcome)
            if error is not None:
                _record_error(span, error)
            elif outcome in ("dead-letter", "lease-lost"):
                span.set_status(Status(StatusCode.ERROR, outcome))
                span.set_attribute("error.type", outcome)
        finally:
            span.end()


class BrokerkitInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces brokerkit's publishes and deliveries (see the module's docstring).

    ``instrument(tracer_provider=None)`` starts, ``uninstrument()`` stops; both are
    idempotent, as for every OpenTelemetry instrumentor, and safe to call from several
    threads at once (one call at a time: BaseInstrumentor's check that it is not
    instrumented yet and its registration are not one step). A span already started when
    ``uninstrument()`` is called ends normally, when its operation ends (a publish
    under way in another thread, a delivery received but settled later, a worker's
    handler running), with that operation's outcome: nothing started is left unended.
    """

    _plugin: _TracingPlugin | None = None
    _calls = threading.RLock()

    def instrument(self, **kwargs: Any) -> Any:
        with self._calls:
            return super().instrument(**kwargs)

    def uninstrument(self, **kwargs: Any) -> Any:
        with self._calls:
            return super().uninstrument(**kwargs)

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        tracer = trace.get_tracer(
            __name__,
            brokerkit.__version__,
            tracer_provider=kwargs.get("tracer_provider"),
            schema_url="https://opentelemetry.io/schemas/1.27.0",
        )
        plugin = _TracingPlugin(tracer)
        get_plugin_manager().register(plugin, name="brokerkit.instrumentation.opentelemetry")
        type(self)._plugin = plugin

    def _uninstrument(self, **kwargs: Any) -> None:
        plugin = type(self)._plugin
        if plugin is not None:
            get_plugin_manager().unregister(plugin)
            type(self)._plugin = None
