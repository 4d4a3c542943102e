"""JSON in and out of the command (review 5 of the command line, finding 4).

``consume --json`` writes valid JSON always: a body may hold NaN or an infinity (msgpack
carries them), which JSON has no token for; they are written as the strings "NaN",
"Infinity" and "-Infinity". ``publish --json`` refuses NaN and Infinity in its input
(not JSON), and publishes a JSON string as JSON, as it does any other JSON value.
"""

from __future__ import annotations

import io
import json
import math
import sys
from typing import Any

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._unlink import unlink_prefixed
from brokerkit.cli._app import run
from tests.conftest import RedisTarget

pytest.importorskip("typer")
pytest.importorskip("msgpack")


def _strict(line: str) -> Any:
    """``line`` as JSON, refusing what Python's json module accepts beyond JSON."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON: {line!r}")

    return json.loads(line, parse_constant=refuse)


def test_consume_writes_non_finite_numbers_as_strings_of_valid_json(
    redis_target: RedisTarget, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: ``{"v": NaN, ...}``, which a JSON parser (jq, JSON.parse) refuses."""
    url = redis_target.url("redis+stream", prefix=prefix, serializer="msgpack")
    body = {"v": math.nan, "w": [math.inf, -math.inf], "x": 1.5, "y": {"z": math.nan}}
    try:
        with brokerkit.connect(url) as broker:
            broker.publish_many("readings", [body, body, math.inf])
        assert run(["consume", url, "readings", "-n", "2", "-t", "5", "--json"]) == 0
        records = [_strict(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["body"] for r in records] == [
            {"v": "NaN", "w": ["Infinity", "-Infinity"], "x": 1.5, "y": {"z": "NaN"}}
        ] * 2
        assert run(["consume", url, "readings", "-n", "1", "-t", "5"]) == 0
        assert capsys.readouterr().out == '"Infinity"\n'
    finally:
        unlink_prefixed(BrokerURL.parse(redis_target.url("redis")), prefix)


@pytest.mark.parametrize("text", ['{"v": NaN}', "Infinity", "[1, -Infinity]"])
def test_publish_json_refuses_nan_and_infinity(
    shared: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str], text: str
) -> None:
    url, broker = shared
    assert run(["publish", url, "orders", text, "--json"]) == 2
    err = capsys.readouterr().err
    assert "not JSON" in err and "--json" in err
    assert broker.inspect("orders").length == 0


def test_publish_json_stdin_refuses_nan_naming_the_line(
    shared: tuple[str, brokerkit.Broker],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, broker = shared
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"v": 1}\n{"v": NaN}\n'))
    assert run(["publish", url, "orders", "-", "--json"]) == 2
    assert "line 2 of stdin: not JSON" in capsys.readouterr().err
    assert broker.inspect("orders").length == 0


def test_publish_json_keeps_a_json_string_json(
    shared: tuple[str, brokerkit.Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: ``--json '"hello"'`` stored the text/plain ``hello``, while a number or
    null was stored as application/json."""
    url, broker = shared
    for text in ['"hello"', "3", "null", '{"a": "b"}']:
        assert run(["publish", url, "orders", text, "--json"]) == 0
    got = list(broker.consume("orders", timeout=0))
    assert [d.content_type for d in got] == ["application/json"] * 4
    assert [d.payload for d in got] == [b'"hello"', b"3", b"null", b'{"a":"b"}']
    assert [d.body for d in got] == ["hello", 3, None, {"a": "b"}]
    # without --json a body is text, as it always was
    assert run(["publish", url, "orders", '"hello"']) == 0
    (text,) = broker.consume("orders", timeout=0)
    assert text.content_type.startswith("text/plain") and text.body == '"hello"'
    capsys.readouterr()


def test_publish_json_on_msgpack_keeps_the_serializer(
    redis_target: RedisTarget, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The broker's serializer encodes every --json value, a string as well."""
    url = redis_target.url("redis+list", prefix=prefix, serializer="msgpack")
    try:
        assert run(["publish", url, "orders", '"hello"', "--json"]) == 0
        assert run(["publish", url, "orders", '{"a": 1}', "--json"]) == 0
        with brokerkit.connect(url) as broker:
            got = list(broker.consume("orders", timeout=1, limit=2))
            broker.ack(*got)
        assert [d.content_type for d in got] == ["application/msgpack"] * 2
        assert [d.body for d in got] == ["hello", {"a": 1}]
        capsys.readouterr()
    finally:
        unlink_prefixed(BrokerURL.parse(redis_target.url("redis")), prefix)
