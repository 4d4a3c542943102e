"""``brokerkit demo``: the three scenes run one after another and drawn with rich."""

from __future__ import annotations

import math
import secrets
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._plugins import connect
from brokerkit._url import BrokerURL
from brokerkit.cli._bench import remove_made
from brokerkit.demo._chart import check_chart_path, write_chart
from brokerkit.demo._orderflow import FlowResult, run_order_flow
from brokerkit.demo._peak import PeakResult, Sample, run_peak_shaving
from brokerkit.demo._retry import Event, RetryResult, run_failing_consumer
from brokerkit.demo._services import BACKGROUND, CRITICAL_PATH, make_orders
from brokerkit.exceptions import ConnectionFailed, InvalidOption

__all__ = ["MAX_ORDERS", "MAX_SPEED", "DemoConfig", "DemoReport", "run_demo"]

#: The most ``orders`` and ``sale_orders``: every order of a scene is made in memory
#: before it starts, so a count past this ran the process out of memory.
MAX_ORDERS = 100_000

#: The largest ``speed``: the simulated services 100 times as slow (scene 1 takes
#: about 50 s an order). More would take hours, or overflow the services' sleeps.
MAX_SPEED = 100.0

_BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class DemoConfig:
    """How big each scene is. The defaults run in about ten seconds.

    :ivar url: the broker's URL; left out of the config's repr (it may hold a password).
    :ivar speed: latency factor of the simulated services in the first scene.
    :ivar plot: where to write the flash-sale chart (``.html``, ``.svg`` or ``.png``).
    :ivar live: redraw the flash sale in place (only on a terminal).
    """

    url: str = field(default="memory://", repr=False)
    orders: int = 5
    speed: float = 1.0
    sale_orders: int = 2400
    sale_rate: float = 2000.0
    workers: int = 3
    work_ms: float = 5.0
    failing_orders: int = 40
    max_deliveries: int = 3
    plot: Path | None = None
    live: bool = True

    def __post_init__(self) -> None:
        """:raises InvalidOption: ``speed`` is not a number from 0 to :data:`MAX_SPEED`;
        ``orders`` or ``sale_orders`` is not a whole number from 1 to :data:`MAX_ORDERS`."""
        for name in ("orders", "sale_orders"):
            count = getattr(self, name)
            whole = isinstance(count, int) and not isinstance(count, bool)
            if not (whole and 1 <= count <= MAX_ORDERS):
                raise InvalidOption(
                    f"{name} must be a whole number from 1 to {MAX_ORDERS:,}, got {count!r}"
                )
        speed = self.speed
        number = isinstance(speed, (int, float)) and not isinstance(speed, bool)
        if not (number and math.isfinite(speed) and 0 <= speed <= MAX_SPEED):
            raise InvalidOption(f"speed must be a number from 0 to {MAX_SPEED:g}, got {speed!r}")


@dataclass
class DemoReport:
    """What each scene found; a scene the backend cannot stage is in ``skipped``.

    :ivar left: what the scenes' brokers made on the server and could not delete
        (see :func:`~brokerkit.cli._bench.remove_made`), one line each.
    """

    flow: FlowResult | None = None
    peak: PeakResult | None = None
    retry: RetryResult | None = None
    chart: Path | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every scene that ran reconciled."""
        return (
            (self.flow is None or self.flow.complete)
            and (self.peak is None or self.peak.reconciled)
            and (self.retry is None or self.retry.reconciled)
        )


def run_demo(config: DemoConfig, console: Console | None = None) -> DemoReport:
    """Run the order-flow demo against ``config.url`` and draw it on ``console``.

    :raises BrokerError: ``config.plot`` is no file a chart can be written to (see
        :func:`~brokerkit.demo._chart.check_chart_path`), before any scene runs.
    """
    console = console or Console()
    url = BrokerURL.parse(config.url)
    if config.plot is not None:
        check_chart_path(config.plot)
    private = url.scheme == "memory" and not (url.host or url.path.strip("/"))
    namespace = "" if private else f"demo-{secrets.token_hex(3)}."
    report = DemoReport()
    console.rule(f"[bold]brokerkit demo[/] on {url}")

    topic = f"{namespace}order.created"
    with connect(url) as broker, _tidy(broker, report, console, [topic], per_service=True):
        _scene_header(console, 1, "Placing an order: synchronously, then asynchronously")
        report.flow = run_order_flow(
            broker, make_orders(config.orders), topic=topic, speed=config.speed
        )
        _show_flow(console, report.flow, topic)

    _scene_header(console, 2, "Peak shaving: a flash sale")
    topic = f"{namespace}flash-sale.orders"
    with connect(url) as broker, _tidy(broker, report, console, [topic]):
        missing = _missing(broker.capabilities, Capability.PERSISTENT | Capability.COMPETING)
        if missing:
            why = "a message published while every consumer is busy would be lost"
            _skip(console, report, "peak shaving", url, missing, why)
        else:
            report.peak = _run_peak(console, broker, config, topic)
            if config.plot is not None:
                report.chart = write_chart(
                    config.plot, report.peak.samples, title=f"Flash sale on {url.scheme}://"
                )
            _show_peak(console, report.peak, report.chart)

    _scene_header(console, 3, "A failing consumer: nack, redelivery, dead letters")
    topic = f"{namespace}sms.orders"
    with connect(url) as probe:
        missing = _missing(probe.capabilities, Capability.ACK | Capability.DEAD_LETTER)
    if missing:
        why = "a failed message is not redelivered"
        _skip(console, report, "failing consumer", url, missing, why)
    else:
        with (
            connect(url, max_deliveries=config.max_deliveries) as broker,
            _tidy(broker, report, console, [topic, broker.dead_letter_topic(topic)]),
        ):
            orders = make_orders(config.failing_orders, first_id=2001)
            report.retry = run_failing_consumer(broker, orders, topic=topic)
            _show_retry(console, report.retry)

    _say_left(console, report.left, url)
    verdict = "[bold green]all reconciled[/]" if report.ok else "[bold red]NOT reconciled[/]"
    console.rule(verdict)
    return report


def _skip(
    console: Console, report: DemoReport, scene: str, url: BrokerURL, missing: str, why: str
) -> None:
    """Record and say that ``scene`` cannot run on this backend, and why."""
    report.skipped[scene] = f"{url.scheme} lacks {missing}"
    console.print(f"[yellow]skipped:[/] {url.scheme} lacks {missing}: {why}")


def _missing(have: Capability, need: Capability) -> str:
    return ", ".join(c.name or "" for c in Capability if c and c in need and c not in have)


@contextmanager
def _tidy(
    broker: Broker,
    report: DemoReport,
    console: Console,
    topics: list[str],
    *,
    per_service: bool = False,
) -> Iterator[None]:
    """On the way out of a scene, purge its ``topics`` (with ``per_service``, on a
    backend without FANOUT: the topic of each background service instead) and delete
    what ``broker`` made on the server (:func:`remove_made`: NATS's durable consumers
    and the stream if it made it, RabbitMQ's queues and exchanges); what it could not
    is added to ``report.left``. After an error or Ctrl-C too (said at once, as the
    report is not shown then), but for a connection that failed: nothing is tried."""
    if per_service and Capability.FANOUT not in broker.capabilities:
        topics = [f"{topics[0]}.{s.name.replace(' ', '-')}" for s in BACKGROUND]

    def tidy() -> list[str]:
        left: list[str] = []
        try:
            _cleanup(broker, topics)
        except ConnectionFailed:
            raise  # (the deletes would each wait as long)
        except Exception as exc:
            left.append(f"(could not purge {', '.join(topics)}: {type(exc).__name__}: {exc})")
        return left + remove_made(broker, topics)

    try:
        yield
    except ConnectionFailed:
        raise
    except BaseException:
        try:
            left = tidy()
        except ConnectionFailed as exc:
            left = [f"(could not purge {', '.join(topics)}: {exc})"]
        report.left += left
        _say_left(console, left, broker.url)
        raise
    report.left += tidy()


def _say_left(console: Console, left: list[str], url: BrokerURL) -> None:
    """Name what the demo made on ``url`` and could not delete, one a line."""
    if left:
        console.print(f"[yellow]the demo left {len(left)} thing(s) on {url}:[/]")
        for line in left:
            console.print(f"  {line}", markup=False, highlight=False)


def _cleanup(broker: Broker, topics: list[str]) -> None:
    if Capability.PERSISTENT in broker.capabilities:
        for name in topics:
            broker.purge(name)


def _scene_header(console: Console, number: int, title: str) -> None:
    console.print()
    console.print(Text(f"{number}. {title}", style="bold cyan"))


def _show_flow(console: Console, flow: FlowResult, topic: str) -> None:
    critical = " → ".join(s.name for s in CRITICAL_PATH)
    background = ", ".join(s.name for s in BACKGROUND)
    console.print(
        f"synchronous: {critical} → {background}, in turn\n"
        f"asynchronous: {critical}, then publish({topic!r}); {background} consume it"
        f" ({_FANOUT[flow.fanout]})"
    )
    table = Table(title="response time the customer sees")
    table.add_column("order", justify="right")
    table.add_column("synchronous", justify="right")
    table.add_column("asynchronous", justify="right")
    for n, (sync, asyn) in enumerate(zip(flow.sync_ms, flow.async_ms, strict=True), 1):
        table.add_row(str(n), f"{sync:.0f} ms", f"{asyn:.0f} ms")
    sync_mean = statistics.fmean(flow.sync_ms)
    async_mean = statistics.fmean(flow.async_ms)
    table.add_section()
    table.add_row("mean", f"{sync_mean:.0f} ms", f"[bold green]{async_mean:.0f} ms[/]")
    console.print(table)
    console.print(
        f"the asynchronous response is [bold]{sync_mean / async_mean:.1f}x[/] faster; "
        f"the background work for all {flow.orders} orders was done "
        f"{flow.background_s:.2f} s after the first order"
    )
    for service, seen in flow.seen.items():
        dupes = flow.duplicates[service]
        mark = "[green]✓[/]" if seen == flow.orders and not dupes else "[red]✗[/]"
        console.print(
            f"  {mark} {service:<10} saw {seen}/{flow.orders} orders"
            + (f", {dupes} twice" if dupes else "")
        )


_FANOUT = {
    "groups": "each service is its own consumer group",
    "subscribers": "each service is its own subscriber",
    "topics": "no FANOUT on this backend: one topic per service",
}


def _run_peak(console: Console, broker: object, config: DemoConfig, topic: str) -> PeakResult:
    from brokerkit._broker import Broker

    assert isinstance(broker, Broker)
    orders = make_orders(config.sale_orders, first_id=100_001)
    console.print(
        f"{config.sale_orders} orders arrive at {config.sale_rate:.0f}/s; "
        f"{config.workers} workers take {config.work_ms:.0f} ms per order "
        f"(about {config.workers * 1000 / config.work_ms:.0f}/s together)"
    )
    history: list[Sample] = []
    live = Live(
        _depth_view(history, config.sale_orders),
        console=console,
        refresh_per_second=12,
        transient=True,
    )
    live_on = config.live and console.is_terminal

    def on_sample(sample: Sample) -> None:
        history.append(sample)
        if live_on:
            live.update(_depth_view(history, config.sale_orders))

    if live_on:
        with live:
            return run_peak_shaving(
                broker,
                orders,
                topic=topic,
                workers=config.workers,
                work_ms=config.work_ms,
                burst_rate=config.sale_rate,
                on_sample=on_sample,
            )
    return run_peak_shaving(
        broker,
        orders,
        topic=topic,
        workers=config.workers,
        work_ms=config.work_ms,
        burst_rate=config.sale_rate,
        on_sample=on_sample,
    )


def _bar(value: int, total: int, width: int = 40) -> str:
    filled = round(width * value / total) if total else 0
    return "█" * filled + "░" * (width - filled)


def sparkline(values: list[int], width: int = 60) -> str:
    """``values`` as a line of block characters, resampled to ``width``."""
    if not values:
        return ""
    step = max(len(values) / width, 1.0)
    picked = [values[min(int(i * step), len(values) - 1)] for i in range(min(width, len(values)))]
    top = max(picked) or 1
    return "".join(
        _BARS[min(int(v / top * (len(_BARS) - 1) + 0.5), len(_BARS) - 1)] for v in picked
    )


def _depth_view(history: list[Sample], total: int) -> Panel:
    last = history[-1] if history else Sample(0.0, 0, 0)
    lines = Table.grid(padding=(0, 1))
    lines.add_row("published", f"[blue]{_bar(last.published, total)}[/]", f"{last.published}")
    lines.add_row("processed", f"[green]{_bar(last.processed, total)}[/]", f"{last.processed}")
    lines.add_row("backlog", f"[red]{_bar(last.backlog, total)}[/]", f"{last.backlog}")
    trend = Text(sparkline([s.backlog for s in history]), style="red")
    return Panel(Group(lines, trend), title=f"t = {last.t:4.1f} s", expand=False)


def _show_peak(console: Console, peak: PeakResult, chart: Path | None) -> None:
    peak_at = max(peak.samples, key=lambda s: s.backlog) if peak.samples else None
    console.print(_depth_view(list(peak.samples), peak.orders))
    drain = peak.total_s - (peak_at.t if peak_at else 0.0)
    console.print(
        f"the sale published {peak.orders} orders in {peak.burst_s:.1f} s "
        f"({peak.orders / max(peak.burst_s, 1e-9):.0f}/s); the backlog peaked at "
        f"[bold]{peak.peak_backlog}[/] at t = {peak_at.t if peak_at else 0:.1f} s and drained "
        f"{drain:.1f} s later, at the workers' own pace "
        f"({peak.orders / max(peak.total_s, 1e-9):.0f} orders/s overall)"
    )
    console.print(f"backlog over time: [red]{sparkline([s.backlog for s in peak.samples])}[/]")
    if chart is not None:
        console.print(f"chart written to {chart}")
    mark = "[green]✓[/]" if peak.reconciled else "[red]✗[/]"
    console.print(
        f"  {mark} reconciled: {peak.orders} published, {peak.processed} processed, "
        f"{peak.lost} lost, {peak.duplicates} twice"
    )


def _runs(events: list[Event]) -> str:
    """``#1-#3 invalid phone number → nack``: consecutive equal outcomes as one step."""
    steps: list[str] = []
    start = 0
    for n, event in enumerate(events):
        if n + 1 < len(events) and events[n + 1].outcome == event.outcome:
            continue
        first = events[start].attempt
        where = f"#{first}" if first == event.attempt else f"#{first}-#{event.attempt}"
        what = "sent" if event.outcome == "sent" else f"{event.outcome} → nack"
        steps.append(f"{where} {what}")
        start = n + 1
    return "; ".join(steps)


def _attempt(event: Event) -> int:
    return event.attempt


def _show_retry(console: Console, retry: RetryResult) -> None:
    console.print(
        f"{retry.orders} orders; the SMS gateway rejects invalid phone numbers (ids ending "
        f"in 0) and times out once on ids ending in 5; max_deliveries = {retry.max_deliveries}"
    )
    table = Table(title="orders whose SMS failed, delivery by delivery")
    for column in ("order", "deliveries", "result"):
        table.add_column(column)
    dead_ids = {d.order_id for d in retry.dead}
    failed = sorted({e.order_id for e in retry.events if e.outcome != "sent"})
    for order_id in failed:
        attempts = sorted((e for e in retry.events if e.order_id == order_id), key=_attempt)
        steps = _runs(attempts)
        result = "[red]dead-lettered[/]" if order_id in dead_ids else "[green]sent on retry[/]"
        table.add_row(str(order_id), steps, result)
    console.print(table)
    dead = Table(title=f"dead-letter topic {retry.dead_letter_topic!r}")
    for column in ("order", "x-dead-letter-reason", "x-deliveries", "x-original-topic"):
        dead.add_column(column)
    for letter in retry.dead:
        dead.add_row(str(letter.order_id), letter.reason, letter.deliveries, letter.original_topic)
    console.print(dead)
    mark = "[green]✓[/]" if retry.reconciled else "[red]✗[/]"
    console.print(
        f"  {mark} reconciled: {retry.sent} sent + {len(retry.dead)} dead-lettered = "
        f"{retry.sent + len(retry.dead)} of {retry.orders}; {retry.nacked} nacks, "
        f"{retry.redelivered} redeliveries, {len(retry.recovered)} recovered on retry, "
        f"{retry.duplicates} sent twice"
    )
