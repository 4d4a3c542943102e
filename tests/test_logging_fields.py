"""Every log line brokerkit writes carries topic, group, consumer and message id."""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import pytest

import brokerkit
from brokerkit._logging import FIELDS, LOGGERS

PACKAGE = Path(brokerkit.__file__).resolve().parent
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


#: Functions that log what they are given, their ``extra`` included: their callers must
#: pass the fields, and the calls inside them forward them as they are.
FORWARDERS = {"log_error"}


def _calls() -> list[tuple[Path, ast.Call]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        forwarding = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name in FORWARDERS
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or id(node) in forwarding:
                continue
            if (
                isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
                and node.func.attr in LEVELS
            ) or (isinstance(node.func, ast.Name) and node.func.id in FORWARDERS):
                found.append((path, node))
    return found


def test_every_log_call_passes_the_fields() -> None:
    calls = _calls()
    assert len(calls) > 20  # the scan finds the library's log lines
    missing = [
        f"{path.relative_to(PACKAGE)}:{call.lineno}"
        for path, call in calls
        if not any(
            k.arg == "extra"
            and isinstance(k.value, ast.Call)
            and isinstance(k.value.func, ast.Name)
            and k.value.func.id.endswith("_fields")
            for k in call.keywords
        )
    ]
    assert missing == []


def test_every_logger_is_a_documented_one() -> None:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(node.args[0].value)
    assert names <= set(LOGGERS)
    assert {"brokerkit", "brokerkit.redis", "brokerkit.nats", "brokerkit.kombu"} <= names


def test_a_record_carries_the_fields(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        @brokerkit.hookimpl
        def brokerkit_on_ack(self, deliveries: Any) -> None:
            raise RuntimeError("boom")

    plugin = Broken()
    brokerkit.get_plugin_manager().register(plugin)
    try:
        with brokerkit.connect("memory://logging-fields") as broker:
            message_id = broker.publish("orders", 1)
            with caplog.at_level(logging.ERROR, "brokerkit.hooks"):
                for delivery in broker.consume("orders", group="billing", consumer="c1", timeout=0):
                    delivery.ack()
    finally:
        brokerkit.get_plugin_manager().unregister(plugin)
    (record,) = caplog.records
    fields = {name: getattr(record, name) for name in FIELDS}
    assert fields == {
        "topic": "orders",
        "group": "billing",
        "consumer": "c1",
        "message_id": message_id,
    }
