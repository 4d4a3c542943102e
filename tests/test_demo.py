"""The order-flow demo, run small and fast: each scene must reconcile."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

import brokerkit
from brokerkit.demo import (
    BACKGROUND,
    make_orders,
    run_failing_consumer,
    run_order_flow,
    run_peak_shaving,
)
from brokerkit.demo._chart import render_svg, write_chart
from brokerkit.demo._peak import Sample
from brokerkit.demo._retry import flaky_sms
from brokerkit.demo._services import Order, ServiceFailure


def test_every_background_service_sees_every_order_once() -> None:
    with brokerkit.connect("memory://") as broker:
        result = run_order_flow(broker, make_orders(4), speed=0.01)
    assert result.fanout == "groups"
    assert result.seen == {s.name: 4 for s in BACKGROUND}
    assert result.complete
    assert len(result.sync_ms) == len(result.async_ms) == 4


def test_peak_shaving_reconciles_every_order() -> None:
    samples: list[Sample] = []
    with brokerkit.connect("memory://") as broker:
        result = run_peak_shaving(
            broker,
            make_orders(300),
            workers=2,
            work_ms=0.5,
            burst_rate=20_000,
            sample_every=0.01,
            on_sample=samples.append,
        )
        assert broker.inspect("order.created").in_flight == 0
    assert result.reconciled
    assert (result.processed, result.lost, result.duplicates) == (300, 0, 0)
    assert samples == list(result.samples)
    assert samples[-1].published == samples[-1].processed == 300


def test_failing_consumer_dead_letters_the_poison_orders() -> None:
    orders = make_orders(30, first_id=1)  # ids 1..30: 10, 20, 30 always fail; 5, 15, 25 once
    with brokerkit.connect("memory://", max_deliveries=3) as broker:
        result = run_failing_consumer(broker, orders, work_ms=0)
        # its dead-letter handler read and acked all 3: none is waiting any more
        assert broker.inspect("order.created").dead_lettered == 0
    assert result.reconciled
    assert [d.order_id for d in result.dead] == [10, 20, 30]
    assert {(d.reason, d.deliveries, d.original_topic) for d in result.dead} == {
        ("ServiceFailure: invalid phone number", "3", "order.created")
    }
    assert result.recovered == (5, 15, 25)
    assert result.sent == 27
    assert result.nacked == 3 * 3 + 3
    assert result.duplicates == 0


def test_the_failing_consumer_scene_leaves_its_own_failures_out_of_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The scene's tables tell each failure: the worker's WARNING and ERROR lines about
    them (review 37 made them show at the command's level) would come between the
    scene's title and its text. A failure of another topic's handler still shows."""
    caplog.set_level(logging.DEBUG, logger="brokerkit.worker")
    with brokerkit.connect("memory://", max_deliveries=3) as broker:
        result = run_failing_consumer(broker, make_orders(10, first_id=1), work_ms=0)
    assert result.reconciled and len(result.dead) == 1
    assert not [r for r in caplog.records if getattr(r, "topic", None) == "order.created"]
    logging.getLogger("brokerkit.worker").warning("other", extra={"topic": "another"})
    assert caplog.records[-1].getMessage() == "other"


def test_flaky_sms_fails_one_order_in_ten_for_good() -> None:
    with pytest.raises(ServiceFailure, match="invalid phone"):
        flaky_sms(Order(40, 1, 1), attempt=3)
    with pytest.raises(ServiceFailure, match="timeout"):
        flaky_sms(Order(45, 1, 1), attempt=1)
    flaky_sms(Order(45, 1, 1), attempt=2)
    flaky_sms(Order(41, 1, 1), attempt=1)


def test_orders_round_trip_through_a_body() -> None:
    for order in make_orders(3):
        assert Order.from_body(order.as_body()) == order


def test_chart_files(tmp_path: Path) -> None:
    samples = [Sample(0.0, 0, 0), Sample(0.5, 100, 20), Sample(1.0, 100, 100)]
    svg = render_svg(samples, title="a <sale>")
    assert svg.startswith("<svg") and "&lt;sale&gt;" in svg
    assert svg.count("<polyline") == 3
    html = write_chart(tmp_path / "sale.html", samples, title="sale")
    assert "<svg" in html.read_text()
    with pytest.raises(brokerkit.BrokerError, match=r"\.html, \.svg or \.png"):
        write_chart(tmp_path / "sale.txt", samples, title="sale")


def test_run_demo_end_to_end(tmp_path: Path) -> None:
    rich = pytest.importorskip("rich.console")
    from brokerkit.demo import DemoConfig, run_demo

    stream = io.StringIO()
    console = rich.Console(file=stream, width=100)
    config = DemoConfig(
        orders=2,
        speed=0.02,
        sale_orders=200,
        sale_rate=20_000,
        work_ms=0.5,
        failing_orders=20,
        plot=tmp_path / "sale.svg",
    )
    report = run_demo(config, console)
    output = stream.getvalue()
    assert report.ok, output
    assert report.flow is not None and report.flow.complete
    assert report.peak is not None and report.peak.reconciled
    assert report.retry is not None and len(report.retry.dead) == 2
    assert "all reconciled" in output
    assert (tmp_path / "sale.svg").exists()
