"""``brokerkit exporter``: a Prometheus exporter of a broker's topic gauges."""

from __future__ import annotations

from typing import Annotated

import typer

from brokerkit._plugins import connect
from brokerkit.cli._admin import stop_on_interrupt
from brokerkit.cli._observe import OnlyOpt, topic_names
from brokerkit.cli._output import err
from brokerkit.cli._url import UrlArg, command
from brokerkit.exceptions import BackendUnavailable

__all__ = ["register"]


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
    ``inspect`` on every scrape, until Ctrl-C or SIGTERM.

    Every topic the broker lists, or only those given with --topic (needed on
    backends that cannot list their topics). While the broker cannot be reached a
    scrape still answers within --timeout seconds, its topics reported down
    (brokerkit_topic_up 0; brokerkit_topics_listed 0 when listing failed).
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
    with connect(url) as broker, stop_on_interrupt() as stop:
        registry = CollectorRegistry()
        if not only:
            topic_names(broker)  # a backend that cannot list its topics fails here, at once
        topics = tuple(only) if only else (lambda: topic_names(broker))
        registry.register(TopicCollector(broker, topics, timeout=timeout))
        try:
            server, thread = start_http_server(port, addr=address, registry=registry)
        except OSError as exc:  # a name that does not resolve, a port in use
            raise typer.BadParameter(
                f"cannot listen on {address}:{port}: {exc.strerror or exc}",
                param_hint="--address/--port",
            ) from exc
        try:
            err.print(f"serving the topics of {broker.url} on http://{address}:{port}/metrics")
            stop.wait()
        finally:
            server.shutdown()
            thread.join(5)
    stop.exit_if_interrupted()
