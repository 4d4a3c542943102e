"""``brokerkit demo`` and ``brokerkit bench``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from brokerkit._url import BrokerURL
from brokerkit.backends.redis._options import MAX_PAYLOAD_BYTES
from brokerkit.cli._bench import STEPS, bench_url
from brokerkit.cli._data_output import print_json
from brokerkit.cli._messaging import MAX_COUNT
from brokerkit.cli._output import cell, out, progress_bar
from brokerkit.cli._scratch import say_left, scratch
from brokerkit.cli._url import URL_ENV, UrlArg, command
from brokerkit.exceptions import BrokerError

__all__ = ["MAX_BENCH_SIZE", "register"]

#: The largest ``--size`` of ``brokerkit bench``: the largest payload a Redis backend
#: takes (511 MiB), above which no backend would carry one message of the bench.
MAX_BENCH_SIZE = MAX_PAYLOAD_BYTES


def register(app: typer.Typer) -> None:
    # Not a URL-first command: the demo never takes $BROKERKIT_URL (see demo()).
    app.command("demo")(demo)
    command(app, "bench", bench)


def demo(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            help=f"Run the demo on this broker URL instead of memory:// (${URL_ENV} is not used).",
            show_default=False,
        ),
    ] = "memory://",
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", metavar="FILE", help="Write the flash-sale chart (.html, .svg, .png)."
        ),
    ] = None,
    orders: Annotated[
        int, typer.Option(help="Orders placed each way in scene 1 (1 to 100,000).")
    ] = 5,
    sale_orders: Annotated[
        int, typer.Option(help="Orders in the flash sale (1 to 100,000).")
    ] = 2400,
    speed: Annotated[
        float, typer.Option(help="Latency factor of the simulated services, 0 to 100.")
    ] = 1.0,
) -> None:
    """The e-commerce order flow: sync vs async, a flash sale, a failing consumer.

    It runs on the embedded memory:// broker, which nothing outlives, unless a URL is
    given: $BROKERKIT_URL is not used, so that the demo never writes to a broker by
    surprise. On a Redis URL it works under a prefix of its own, brokerkit-demo-...,
    and deletes every key under it at the end, even after an error or Ctrl-C. On
    another broker it purges its topics (demo-<run>.*) and deletes what each scene's
    broker made there (NATS durable consumers, and the stream if it made it; RabbitMQ
    queues and exchanges); it names anything it could not delete.
    """
    from brokerkit.demo import DemoConfig, run_demo
    from brokerkit.demo._chart import check_chart_path
    from brokerkit.demo._runner import MAX_ORDERS, MAX_SPEED

    # refused before the demo writes anything, not after its scenes ran
    for hint, count in (("--orders", orders), ("--sale-orders", sale_orders)):
        if not 1 <= count <= MAX_ORDERS:
            raise typer.BadParameter(
                f"must be a whole number from 1 to {MAX_ORDERS:,}, got {count}",
                param_hint=hint,
            )
    if not (math.isfinite(speed) and 0 <= speed <= MAX_SPEED):
        raise typer.BadParameter(
            f"must be a number from 0 to {MAX_SPEED:g}, got {speed!r}", param_hint="--speed"
        )
    if plot is not None:
        try:
            check_chart_path(plot)
        except BrokerError as exc:
            raise typer.BadParameter(str(exc), param_hint="--plot") from None
    with scratch(url, "demo") as (target, _):
        config = DemoConfig(
            url=target.render(hide_password=False),
            orders=orders,
            sale_orders=sale_orders,
            speed=speed,
            plot=plot,
        )
        report = run_demo(config, out)
    if not report.ok:
        raise typer.Exit(1)


def bench(
    url: UrlArg,
    count: Annotated[
        int,
        typer.Option("--count", "-n", help=f"Messages per step (1 to {MAX_COUNT:,})."),
    ] = 5000,
    size: Annotated[
        int,
        typer.Option("--size", min=0, help=f"Body size in bytes, 0 to {MAX_BENCH_SIZE} (511 MiB)."),
    ] = 100,
    step: Annotated[
        list[str] | None,
        typer.Option("--step", help=f"Only these steps (repeatable): {', '.join(STEPS)}."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """A quick look at a URL's throughput and latency (see benchmarks/ for the full suite).

    On Redis it works under a prefix of its own, brokerkit-bench-..., and deletes every
    key under it at the end; on kombu it deletes the queues and exchanges it declared,
    on NATS the durable consumers it made (and the stream, if it made it and nothing
    else is in it). It names on stderr each thing it could not delete, and why.
    """
    if not 1 <= count <= MAX_COUNT:
        # a step holds every message of a round (memory://: in this process) and
        # publish_many lists its batches first: a count past this ran out of memory
        raise typer.BadParameter(
            f"must be a whole number from 1 to {MAX_COUNT:,}, got {count}",
            param_hint="'--count' / '-n'",
        )
    if size > MAX_BENCH_SIZE:
        raise typer.BadParameter(
            f"must be at most {MAX_BENCH_SIZE} bytes (511 MiB, the largest payload a Redis "
            f"backend takes), got {size}",
            param_hint="--size",
        )
    unknown = [name for name in step or () if name not in STEPS]
    if unknown:
        raise typer.BadParameter(
            f"unknown step {', '.join(map(repr, unknown))}; the steps are {', '.join(STEPS)}",
            param_hint="--step",
        )
    steps = tuple(step) if step else STEPS
    left: list[str] = []
    try:
        with (
            scratch(url, "bench") as (target, _),
            progress_bar("{task.description:<18}") as bar,
        ):
            tasks: dict[str, int] = {}

            def progress(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = int(bar.add_task(name, total=total))
                bar.update(tasks[name], completed=done)  # type: ignore[arg-type]

            results = bench_url(
                target.render(hide_password=False),
                count=count,
                size=size,
                steps=steps,
                progress=progress,
                left=left,
            )
    finally:
        say_left("bench", left, BrokerURL.parse(url))
    shown = str(BrokerURL.parse(url))
    if as_json:
        rows = [
            {
                "step": r.step,
                "messages": r.messages,
                "seconds": r.seconds,
                "rate": r.rate,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
            }
            for r in results
        ]
        print_json(out, {"url": shown, "size": size, "results": rows})
        return
    table = Table(title=cell(f"{shown}: {count} messages of {size} bytes"))
    for column in ("step", "msg/s", "p50", "p99"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for r in results:
        p50 = "" if r.p50_ms is None else f"{r.p50_ms:.3f} ms"
        p99 = "" if r.p99_ms is None else f"{r.p99_ms:.3f} ms"
        table.add_row(r.step, f"{r.rate:,.0f}", p50, p99)
    out.print(table)
