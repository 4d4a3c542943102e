"""Interop with a program brokerkit did not write: Node's ioredis (peer.mjs, its own
implementation of docs/wire-format.md) produces and consumes on all three Redis
backends, headers included, against the session's real redis-server."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from brokerkit._message import Message
from brokerkit.backends.redis import _envelope, _stream_fields
from tests.conftest import RedisTarget

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "vectors" / "redis-wire.json"

Peer = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def node() -> str:
    """node, with ioredis installed from tests/interop/package-lock.json (``npm ci``
    once, under a lock, so that parallel workers do not race)."""
    found, npm = shutil.which("node"), shutil.which("npm")
    if found is None or npm is None:
        pytest.skip("the interop tests need Node.js and npm on PATH (apt-get install nodejs npm)")
    with (HERE / ".npm-ci.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (HERE / "node_modules" / "ioredis").is_dir():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=300
            )
    return found


@pytest.fixture
def peer(node: str, redis_target: RedisTarget) -> Peer:
    def run(action: str, **args: Any) -> list[dict[str, Any]]:
        args.setdefault("port", redis_target.port)
        done = subprocess.run(
            [node, str(HERE / "peer.mjs"), action, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])["messages"]  # type: ignore[no-any-return]

    return run


def _spec(message_id: str, body: bytes, content_type: str, headers: dict[str, str]) -> Any:
    return {
        "id": message_id,
        "content_type": content_type,
        "published_at": 1700000000.25,
        "headers": headers,
        "payload_b64": base64.b64encode(body).decode(),
    }


def _payload(record: dict[str, Any]) -> bytes:
    return base64.b64decode(record["payload_b64"])


NODE_MESSAGES = [
    _spec("node-1", b'{"orderId":1}', "application/json", {"trace-id": "t-1", "from": "node"}),
    _spec("node-2", "straße ☃".encode(), "text/plain; charset=utf-8", {}),
    _spec("node-3", b"\x00\xff\nBK1", "application/octet-stream", {"k": "ü"}),
]
RAW = b'{"plain": true}'
#: What brokerkit reads from NODE_MESSAGES: (id, headers, payload, content type).
NODE_READ = [
    ("node-1", {"trace-id": "t-1", "from": "node"}, b'{"orderId":1}', "application/json"),
    ("node-2", {}, "straße ☃".encode(), "text/plain; charset=utf-8"),
    ("node-3", {"k": "ü"}, b"\x00\xff\nBK1", "application/octet-stream"),
]


def _raw_read(payload: bytes) -> tuple[str, dict[str, str], bytes, str]:
    return ("raw-" + hashlib.sha1(payload).hexdigest()[:24], {}, payload, "application/json")


# -- redis+list -----------------------------------------------------------------------


def test_list_node_produces_python_consumes(
    peer: Peer, redis_broker: Callable[..., Any], prefix: str
) -> None:
    peer(
        "list-produce",
        key=f"{prefix}:{{orders}}",
        messages=[*NODE_MESSAGES, {"raw_b64": base64.b64encode(RAW).decode()}],
    )
    broker = redis_broker("redis+list")
    got = list(broker.consume("orders", timeout=0.5, limit=4))
    for delivery in got:
        delivery.ack()
    assert [(d.id, d.headers, d.payload, d.content_type) for d in got] == [
        *NODE_READ,
        _raw_read(RAW),
    ]
    assert got[0].body == {"orderId": 1}
    assert got[0].message.published_at == 1700000000.25


def test_list_python_produces_node_consumes_and_sees_redeliveries(
    peer: Peer, redis_broker: Callable[..., Any], prefix: str
) -> None:
    broker = redis_broker("redis+list")
    first = broker.publish("orders", {"orderId": 7}, headers={"trace-id": "py-1"})
    second = broker.publish("orders", b"\x01\x02")
    # A delivery handed back comes back first, wrapped BKR<n>\n<element>.
    with broker.subscribe("orders") as subscription:
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.id == first
        delivery.nack()
    got = peer("list-consume", key=f"{prefix}:{{orders}}", count=3)
    assert [(m["id"], m["headers"], _payload(m), m["deliveries"]) for m in got] == [
        (first, {"trace-id": "py-1"}, b'{"orderId":7}', 1),
        (second, {}, b"\x01\x02", 0),
    ]
    assert got[0]["content_type"] == "application/json"


# -- redis+stream ---------------------------------------------------------------------


@pytest.mark.parametrize("form", ["lines", "json"])
def test_stream_node_produces_python_consumes(
    peer: Peer, redis_broker: Callable[..., Any], prefix: str, form: str
) -> None:
    broker = redis_broker("redis+stream")
    broker.create_group("orders", "billing", start="earliest")
    peer("stream-produce", key=f"{prefix}:{{orders}}", messages=NODE_MESSAGES, form=form)
    peer("stream-produce", key=f"{prefix}:{{orders}}", messages=[NODE_MESSAGES[0]], form="raw")
    got = list(broker.consume("orders", group="billing", timeout=0.5, limit=4))
    for delivery in got:
        delivery.ack()
    assert [(d.id, d.headers, d.payload, d.content_type) for d in got] == [
        *NODE_READ,
        _raw_read(b'{"orderId":1}'),
    ]


def test_stream_python_produces_node_consumes_in_its_own_group(
    peer: Peer, redis_broker: Callable[..., Any], prefix: str
) -> None:
    broker = redis_broker("redis+stream")
    ids = [
        broker.publish("orders", {"orderId": 8}, headers={"trace-id": "py-2"}),
        broker.publish("orders", "text ✓"),
        broker.publish("orders", b"\xff", content_type="application/vnd.acme"),
    ]
    got = peer("stream-consume", key=f"{prefix}:{{orders}}", group="node-billing", count=10)
    assert [(m["id"], m["headers"], _payload(m), m["content_type"]) for m in got] == [
        (ids[0], {"trace-id": "py-2"}, b'{"orderId":8}', "application/json"),
        (ids[1], {}, "text ✓".encode(), "text/plain; charset=utf-8"),
        (ids[2], {}, b"\xff", "application/vnd.acme"),
    ]
    # The Node group acked its own entries; brokerkit's groups are untouched by it.
    assert broker.inspect("orders").length == 3


# -- redis+pubsub ---------------------------------------------------------------------


def test_pubsub_node_publishes_python_receives(
    peer: Peer, redis_broker: Callable[..., Any], prefix: str
) -> None:
    broker = redis_broker("redis+pubsub")
    with broker.subscribe("chat") as subscription:
        # The subscription is confirmed when subscribe() returns: Node's messages reach it.
        peer(
            "pubsub-publish",
            channel=f"{prefix}:{{chat}}",
            messages=[NODE_MESSAGES[0], {"raw_b64": base64.b64encode(RAW).decode()}],
        )
        got = [subscription.receive(timeout=10) for _ in range(2)]
    assert [(d.id, d.headers, d.payload) for d in got if d is not None] == [
        ("node-1", {"trace-id": "t-1", "from": "node"}, b'{"orderId":1}'),
        ("raw-" + hashlib.sha1(RAW).hexdigest()[:24], {}, RAW),
    ]


def test_pubsub_python_publishes_node_receives(
    node: str, redis_target: RedisTarget, redis_broker: Callable[..., Any], prefix: str
) -> None:
    broker = redis_broker("redis+pubsub")
    args = {"port": redis_target.port, "channel": f"{prefix}:{{chat}}", "count": 2}
    with subprocess.Popen(
        [node, str(HERE / "peer.mjs"), "pubsub-listen", json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as listener:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "ready"  # subscribed
        deadline = time.monotonic() + 30
        heard = 0
        while heard == 0 and time.monotonic() < deadline:
            heard = broker.publish_counted("chat", {"n": 1}, headers={"trace-id": "py-3"}).receivers
        assert heard == 1
        second = broker.publish("chat", "two")
        out, err = listener.communicate(timeout=30)
    assert listener.returncode == 0, err
    got = json.loads(out.strip().splitlines()[-1])["messages"]
    assert [(m["headers"], _payload(m)) for m in got] == [
        ({"trace-id": "py-3"}, b'{"n":1}'),
        ({}, b"two"),
    ]
    assert got[1]["id"] == second


# -- the test vectors, read by the second implementation -------------------------------


def test_node_reads_and_writes_the_test_vectors(peer: Peer) -> None:
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    got = {m["name"]: m for m in peer("vectors", path=str(VECTORS))}
    for case in vectors["messages"]:
        expected = case["message"]
        for side in ("envelope", "fields"):
            decoded = got[case["name"]][side]
            assert decoded["id"] == expected["id"], (case["name"], side)
            assert decoded["headers"] == expected["headers"]
            assert decoded["content_type"] == expected["content_type"]
            assert decoded["published_at"] == expected["published_at"]
            assert decoded["payload_b64"] == expected["payload_b64"]
        # What Node writes, Python reads back as the same message.
        message = Message(
            expected["id"],
            "orders",
            base64.b64decode(expected["payload_b64"]),
            expected["content_type"],
            expected["headers"],
            expected["published_at"],
        )
        envelope = base64.b64decode(got[case["name"]]["reencoded_envelope_b64"])
        assert _envelope.decode("orders", envelope) == message
        header = base64.b64decode(got[case["name"]]["reencoded_bk1_b64"])
        assert _stream_fields.message_from_header("orders", header, message.payload) == message
    for case in vectors["raw_elements"]:
        decoded = got[case["name"]]["envelope"]
        assert {k: decoded[k] for k in case["message"]} == case["message"], case["name"]
