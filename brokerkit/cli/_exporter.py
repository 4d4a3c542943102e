"""``brokerkit exporter``: a Prometheus exporter of a broker's topic gauges."""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from brokerkit._backend import Backend
from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._inspect import TopicInfo
from brokerkit._plugins import backend_for, connect
from brokerkit._url import BrokerURL
from brokerkit.cli._admin import Interrupt, stop_on_interrupt
from brokerkit.cli._observe import OnlyOpt, topic_names
from brokerkit.cli._output import cell, err
from brokerkit.cli._url import UrlArg, command
from brokerkit.exceptions import (
    BackendUnavailable,
    BrokerClosed,
    BrokerError,
    ConnectionFailed,
    InvalidOption,
    InvalidURL,
    Unsupported,
)

__all__ = ["register"]

#: The longest the exporter's stop waits for the thread connecting in the background
#: (see :meth:`_Connection.close`), in seconds.
CONNECT_WAIT = 5.0


def register(app: typer.Typer) -> None:
    command(app, "exporter", exporter)


def exporter(
    url: UrlArg,
    port: Annotated[
        int, typer.Option("--port", "-p", help="The port to serve /metrics on.")
    ] = 9108,
    address: Annotated[
        str, typer.Option("--address", help="The address to listen on.")
    ] = "127.0.0.1",
    only: OnlyOpt = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help="The longest a scrape waits for the broker, in seconds; topics not "
            "inspected by then are reported down (brokerkit_topic_up 0).",
        ),
    ] = 5.0,
) -> None:
    """Serve the topic gauges (length, in flight, dead letters, oldest waiting age,
    consumer lag, pending) of the broker at URL as Prometheus metrics, read with
    inspect on every scrape, until Ctrl-C or SIGTERM.

    Every topic the broker lists, or only those given with --topic (needed on
    backends that cannot list their topics). While the broker cannot be reached a
    scrape still answers within --timeout seconds, its topics reported down
    (brokerkit_topic_up 0; brokerkit_topics_listed 0 when listing failed): from the
    start too, the exporter connecting again on each scrape until the broker answers.
    On stopping it waits 5 seconds at most for a connection still being made.
    """
    if not 0 < port < 65536:
        raise typer.BadParameter("must be a port number, 1 to 65535", param_hint="--port")
    if not 0 < timeout < float("inf"):
        raise typer.BadParameter(
            f"must be a finite number of seconds above 0, got {timeout:g}", param_hint="--timeout"
        )
    try:
        from prometheus_client import CollectorRegistry, start_http_server

        from brokerkit.instrumentation.prometheus import TopicCollector
    except ImportError as exc:
        raise BackendUnavailable(
            f"the exporter needs prometheus_client ({exc}); "
            'install it with: pip install "pybrokerkit[prometheus]"'
        ) from exc
    # A URL or an option that cannot work fails here, at once; the broker itself is
    # connected to in the background, so that one not reachable yet is served down.
    parsed, info = backend_for(url)
    backend = info.load()
    backend.options_of(parsed, {})
    if not only and backend._list_topics is Backend._list_topics:
        # Known before any connection: a broker that comes up must not stop it then.
        raise Unsupported(parsed.scheme, Capability.NONE, "list its topics: name them with --topic")
    with stop_on_interrupt() as stop:
        connection = _Connection(url, listing=not only, stop=stop)
        registry = CollectorRegistry()
        topics = tuple(only) if only else connection.topics
        registry.register(TopicCollector(connection, topics, timeout=timeout))
        # an IPv6 address goes in brackets, as in a URL: [::1]:9108, http://[::1]:9108/
        host = f"[{address}]" if ":" in address else address
        try:
            server, thread = start_http_server(port, addr=address, registry=registry)
        except OSError as exc:  # a name that does not resolve, a port in use
            raise typer.BadParameter(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                param_hint="--address/--port",
            ) from exc
        try:
            err.print(cell(f"serving the topics of {parsed} on http://{host}:{port}/metrics", err))
            connection.start()
            stop.wait()
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
            connection.close()
        if connection.fatal is not None:
            raise connection.fatal
    stop.exit_if_interrupted()


class _Connection:
    """The broker the exporter reads, for its collector: connected in the background
    at the start (:meth:`start`), and by a scrape's reading while it is not (once at a
    time: the collector has one reading under way at most, and a start still
    connecting holds it up), so that a broker not reachable yet is reported down
    (``brokerkit_topic_up`` 0, or ``brokerkit_topics_listed`` 0) until it answers.

    A broker that turns out to be unusable (a backend that cannot list its topics
    when none were named, an option its constructor refuses) sets :attr:`fatal` and
    stops the exporter.
    """

    def __init__(self, url: str, *, listing: bool, stop: Interrupt) -> None:
        self._url = url
        #: The URL as shown (password masked), for the collector's log lines.
        self.url = BrokerURL.parse(url)
        self._listing = listing
        self._stop = stop
        self._lock = threading.Lock()
        self._connecting = threading.Lock()
        self._broker: Broker | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self.fatal: BrokerError | None = None

    def start(self) -> None:
        """Connect in a thread of its own (joined by :meth:`close`); say so on stderr
        if the broker cannot be reached (yet)."""
        # A daemon: a connect outlasting close()'s wait must not hold up the exit.
        self._thread = threading.Thread(
            target=self._first, name="brokerkit-exporter-connect", daemon=True
        )
        self._thread.start()

    def _first(self) -> None:
        try:
            self.broker()
        except ConnectionFailed as exc:
            if self._closed:  # stopped while it tried: nothing to tell
                return
            err.print(
                cell(
                    f"cannot reach {self.url} yet ({exc}); its topics are reported down "
                    "until it answers, connecting again on the next scrape",
                    err,
                )
            )
        except Exception:  # reported by the collector on each scrape (or fatal: stopped)
            pass

    def broker(self) -> Broker:
        """The connected broker, connecting first if need be.

        :raises ConnectionFailed: it cannot be reached (tried again on the next call).
        """
        current = self._current()
        if current is not None:
            return current
        with self._connecting:
            current = self._current()
            if current is not None:
                return current
            try:
                broker = connect(self._url)
            except (InvalidOption, InvalidURL, BackendUnavailable) as exc:
                raise self._fail(exc) from None
            try:
                if self._listing:
                    topic_names(broker)  # a backend that cannot list its topics: fatal
            except Unsupported as exc:
                broker.close()
                raise self._fail(exc) from None
            except BaseException:
                broker.close()
                raise
            return self._keep(broker)

    def _current(self) -> Broker | None:
        with self._lock:
            if self._closed:
                raise BrokerClosed(f"the exporter of {self.url} is stopping")
            return self._broker

    def _keep(self, broker: Broker) -> Broker:
        with self._lock:
            closed = self._closed
            if not closed:
                self._broker = broker
        if closed:
            broker.close()
            raise BrokerClosed(f"the exporter of {self.url} is stopping")
        return broker

    def _fail(self, error: BrokerError) -> BrokerError:
        """``error`` makes the exporter stop: kept in :attr:`fatal`, raised by the command."""
        self.fatal = error
        self._stop.set()
        return error

    def inspect(self, topic: str) -> TopicInfo:
        return self.broker().inspect(topic)

    def topics(self) -> list[str]:
        return topic_names(self.broker())

    def close(self) -> None:
        """Close the broker, and wait for the thread of :meth:`start` to end:
        :data:`CONNECT_WAIT` seconds at most. A connect still under way after that (a
        backend that keeps trying for its own timeout, as kombu+amqp does for its
        ``reconnect_timeout``) is left to end on that thread, a daemon, which closes
        the broker it makes as soon as it has it; a later :meth:`broker` raises
        :class:`BrokerClosed`."""
        with self._lock:
            self._closed = True
            broker, self._broker = self._broker, None
        try:
            if broker is not None:
                broker.close()
        finally:
            if self._thread is not None:
                self._thread.join(CONNECT_WAIT)
