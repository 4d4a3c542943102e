"""kombu's virtual transports (kombu+memory, kombu+redis) beyond the contract suite:
registration, URLs, the names they declare and their clean-up, at-most-once reading,
inspect and purge. kombu+redis runs on the test suite's own redis-server."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kombu.transport.memory import Channel as MemoryChannel
from kombu.transport.memory import Transport as MemoryTransport

import brokerkit
import brokerkit.aio
from brokerkit._capabilities import Capability
from brokerkit.backends.kombu.virtual import KombuVirtualBroker
from brokerkit.exceptions import ConnectionFailed, InvalidOption, InvalidURL
from tests.conftest import RedisTarget
from tests.redis_server import RedisServer

Factory = Callable[..., Any]


@pytest.fixture
def virtual_url(redis_target: RedisTarget) -> Callable[[str, str], str]:
    """``virtual_url(transport, prefix)``: the URL of a virtual transport under test."""

    def url(transport: str, prefix: str) -> str:
        if transport == "memory":
            return f"kombu+memory://?prefix={prefix}"
        target = f"{redis_target.host}:{redis_target.port}/{redis_target.db}"
        return f"kombu+redis://{target}?prefix={prefix}"

    return url


def leftovers(redis_target: RedisTarget, prefix: str) -> list[str]:
    """Every Redis key and kombu in-memory queue or exchange naming ``prefix``."""
    found = [k.decode() for k in redis_target.client().scan_iter(match=f"*{prefix}*")]
    found += [q for q in MemoryChannel.queues if prefix in q]
    found += [e for e in MemoryTransport.global_state.exchanges if prefix in e]
    return found


@pytest.fixture
def kombu_virtual(
    virtual_url: Callable[[str, str], str], redis_target: RedisTarget
) -> Iterator[Factory]:
    """``kombu_virtual(transport, aio=False, **options)``: a broker under this test's
    own prefix. Afterwards, every exchange and queue its brokers declared is deleted."""
    prefix = f"bkt-{uuid.uuid4().hex[:12]}"
    made: list[tuple[str, Any]] = []

    def make(transport: str, *, aio: bool = False, **options: Any) -> Any:
        url = virtual_url(transport, prefix)
        if not aio:
            broker = brokerkit.connect(url, **options)
            made.append((url, broker))
            return broker

        async def opened() -> Any:
            broker = await brokerkit.aio.connect(url, **options)
            made.append((url, broker.sync))  # the thread adapter's sync broker
            return broker

        return opened()

    yield make
    exchanges: set[str] = set()
    queues: set[str] = set()
    for _, broker in made:
        if not broker.closed:
            broker.close()
        exchanges.update(broker.declared[0])
        queues.update(broker.declared[1])
    if made:
        with brokerkit.connect(made[0][0]) as cleaner:
            cleaner.delete(frozenset(exchanges), frozenset(queues))
        assert leftovers(redis_target, prefix) == [], "the clean-up deleted everything"


# -- registration and URLs ---------------------------------------------------------


def test_registered_lazily_with_only_the_capabilities_they_keep() -> None:
    code = (
        "import sys, brokerkit; brokerkit.connect('memory://').close(); "
        "b = {s: b for b in brokerkit.list_backends() for s in b.schemes}; "
        "print(b['kombu+memory'].plugin, b['kombu+redis'].plugin, 'kombu' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["brokerkit.backends.kombu"] * 2 + ["False"]
    assert KombuVirtualBroker.capabilities == (
        Capability.PERSISTENT | Capability.COMPETING | Capability.FANOUT | Capability.ORDERED
    ), "a virtual transport confirms nothing and counts no delivery: no ACK, no DEAD_LETTER"


@pytest.mark.parametrize(
    "url",
    ["kombu+memory://somehost", "kombu+memory:///path", "kombu+redis://127.0.0.1:1/notadb"],
)
def test_a_url_they_cannot_serve_is_refused(url: str) -> None:
    with pytest.raises(InvalidURL):
        brokerkit.connect(url)


def test_an_unreachable_redis_fails_at_connect_without_the_password() -> None:
    with pytest.raises(ConnectionFailed) as caught:
        brokerkit.connect("kombu+redis://:s3cret-pw@127.0.0.1:1/0", connect_timeout=1)
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


# -- at most once ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["memory", "redis"])
def test_a_delivery_leaves_the_queue_when_fetched(kombu_virtual: Factory, transport: str) -> None:
    """At most once: an unacked delivery never comes back, even after its broker closes."""
    first = kombu_virtual(transport)
    first.publish("t", b"once")
    with first.subscribe("t") as sub:
        got = sub.receive(timeout=5)
        assert got is not None and got.body == b"once"
    first.close()  # never acked
    assert kombu_virtual(transport).inspect("t").length == 0
    with kombu_virtual(transport).subscribe("t") as sub:
        assert sub.receive(timeout=0.2) is None


@pytest.mark.parametrize("transport", ["memory", "redis"])
def test_closing_a_subscription_puts_its_unread_buffer_back(
    kombu_virtual: Factory, transport: str
) -> None:
    broker = kombu_virtual(transport)
    broker.publish_many("t", [b"1", b"2", b"3", b"4"])
    with broker.subscribe("t", prefetch=4) as sub:
        first = sub.receive(timeout=5)
        assert first is not None and first.body == b"1"
    assert broker.inspect("t").length == 3, "the three fetched but unread are back"
    with broker.subscribe("t") as sub:
        rest = [sub.receive(timeout=5) for _ in range(3)]
    assert [d.body for d in rest if d is not None] == [b"2", b"3", b"4"]


@pytest.mark.parametrize("transport", ["memory", "redis"])
def test_inspect_and_purge_count_every_group(kombu_virtual: Factory, transport: str) -> None:
    broker = kombu_virtual(transport)
    broker.subscribe("t", group="audit").close()
    broker.publish_many("t", [b"a", b"b"])
    info = broker.inspect("t")
    assert info.length == 2
    assert {g.name: g.lag for g in info.groups} == {"audit": 2, "default": 2}
    assert broker.purge("t") == 4
    assert broker.inspect("t").length == 0


# -- kombu+redis: names, clean-up, reconnection ------------------------------------


def test_redis_clean_up_leaves_no_key_of_the_run(
    redis_target: RedisTarget, virtual_url: Callable[[str, str], str]
) -> None:
    prefix = f"bkt-{uuid.uuid4().hex[:12]}"
    client = redis_target.client()
    with brokerkit.connect(virtual_url("redis", prefix)) as broker:
        broker.subscribe("t", group="g").close()
        broker.publish("t", b"x")
        keys = {k.decode() for k in client.scan_iter(match=f"*{prefix}*")}
        assert keys == {
            f"{prefix}|t|default",
            f"{prefix}|t|g",
            f"_kombu.binding.{prefix}|t",
            f"_kombu.binding_permanent.{prefix}|t",
        }, "a list per group, and kombu's binding tables of the topic's exchange"
        broker.delete(*broker.declared)
    assert list(client.scan_iter(match=f"*{prefix}*")) == []


def test_redis_delete_refuses_names_outside_its_prefix(kombu_virtual: Factory) -> None:
    broker = kombu_virtual("redis")
    with pytest.raises(InvalidOption, match="not a name under the prefix"):
        broker.delete(frozenset(), frozenset({"someone-else|t|default"}))


def test_redis_a_receive_rides_out_a_server_restart(tmp_path: Any) -> None:
    """Reads reconnect (kombu's connection, with backoff) for up to reconnect_timeout."""
    with RedisServer(appendonly=True) as server:
        url = f"kombu+redis://127.0.0.1:{server.port}/0?prefix=bkt-{uuid.uuid4().hex[:12]}"
        with brokerkit.connect(url, reconnect_timeout=30) as broker:
            broker.publish("t", b"kept")
            with broker.subscribe("t") as sub:
                server.kill()
                got: list[Any] = []
                reader = threading.Thread(target=lambda: got.append(sub.receive(timeout=20)))
                reader.start()
                server.start()
                reader.join(30)
                assert got and got[0] is not None and got[0].body == b"kept"
            broker.delete(*broker.declared)


def test_redis_a_read_gives_up_after_reconnect_timeout() -> None:
    with RedisServer() as server:
        url = f"kombu+redis://127.0.0.1:{server.port}/0?prefix=bkt-{uuid.uuid4().hex[:12]}"
        with brokerkit.connect(url, reconnect_timeout=0.3, connect_timeout=1) as broker:
            sub = broker.subscribe("t")
            server.kill()
            with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{server.port}"):
                sub.receive(timeout=5)
