"""What ``brokerkit bench`` and ``brokerkit demo`` leave on NATS JetStream and RabbitMQ:
nothing they made, and nothing of another program's removed.

Before: a bench run left its durable consumers (three a run, and the stream of the
URL's ``prefix`` when it made it) on NATS, and on RabbitMQ the queue of each topic and
of its dead-letter topic with their exchanges (25 names for the five steps), only
named on stderr; the demo only purged its topics and left seven consumers and the
stream on NATS, eleven queues and ten exchanges on RabbitMQ. Now each deletes what its
broker made (:func:`brokerkit.cli._bench.remove_made`, through the concrete broker's
``declared`` and ``delete``), and names only what it could not.

NATS runs on the test process's own server (``tests/nats_server.py``), so the streams
and consumers on it are compared whole; RabbitMQ is shared, so the names under the
test's own prefix are compared there.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import amqp.exceptions
import nats as nats_py
import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.cli._app import run
from brokerkit.cli._bench import bench_url, remove_made
from brokerkit.exceptions import BrokerError, InvalidOption
from tests.interrupting import interrupt_demo_in_its_flash_sale
from tests.kombu_rabbitmq import amqp_url, delete_names, rabbitmq, raw_connection

__all__ = ["rabbitmq"]

pytest.importorskip("typer")

DEMO = ["--orders", "2", "--sale-orders", "200", "--speed", "0.1"]
BENCH = ["-n", "20", "--json"]

#: stream -> its consumers, and how many messages it holds.
NatsState = dict[str, tuple[frozenset[str], int]]


# -- NATS ---------------------------------------------------------------------------


def _nats_state(url: str) -> NatsState:
    """Every stream on the server, with its consumers and its message count."""

    async def read() -> NatsState:
        nc = await nats_py.connect(url)
        try:
            js = nc.jetstream()
            state: NatsState = {}
            for stream in await js.streams_info():
                name = stream.config.name or ""
                consumers = frozenset(c.name for c in await js.consumers_info(name))
                state[name] = (consumers, stream.state.messages)
            return state
        finally:
            await nc.close()

    return asyncio.run(read())


def _another_program(url: str, stream: str, *, make_stream: bool) -> None:
    """What another program does on ``stream``: (makes it,) adds a durable consumer of
    its own and stores a message on a subject of its own."""

    async def work() -> None:
        nc = await nats_py.connect(url)
        try:
            js = nc.jetstream()
            if make_stream:
                await js.add_stream(name=stream, subjects=[f"{stream}.>"])
            await js.add_consumer(stream, durable_name="theirs", filter_subject=f"{stream}.theirs")
            await js.publish(f"{stream}.theirs", b"keep me")
        finally:
            await nc.close()

    asyncio.run(work())


def _bench_left(err: str) -> list[str]:
    return [line.strip() for line in err.splitlines() if line.startswith("  ")]


def test_bench_on_nats_leaves_the_server_as_it_found_it(
    nats_url: str, nats_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _nats_state(nats_url)
    assert run(["bench", f"{nats_url}?prefix={nats_prefix}", *BENCH]) == 0
    err = capsys.readouterr().err
    assert "bench left" not in err, err
    assert _nats_state(nats_url) == before  # its consumers, and the stream it made


def test_bench_on_nats_keeps_another_programs_stream_consumer_and_message(
    nats_url: str, nats_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _another_program(nats_url, nats_prefix, make_stream=True)
    before = _nats_state(nats_url)
    assert before[nats_prefix] == (frozenset({"theirs"}), 1)
    assert run(["bench", f"{nats_url}?prefix={nats_prefix}", *BENCH]) == 0
    assert "bench left" not in capsys.readouterr().err
    assert _nats_state(nats_url) == before


class _Stop(Exception):
    """Ends a bench round half way."""


def test_a_bench_cut_short_on_nats_still_leaves_the_server_as_it_found_it(
    nats_url: str, nats_prefix: str
) -> None:
    before = _nats_state(nats_url)

    def stop(step: str, done: int, total: int) -> None:
        if done:  # published, subscribed, and received some: the rest is in the stream
            raise _Stop(step)

    left: list[str] = []
    with pytest.raises(_Stop):
        bench_url(
            f"{nats_url}?prefix={nats_prefix}",
            count=200,
            steps=["consume_ack_p1"],
            progress=stop,
            left=left,
        )
    assert left == []
    assert _nats_state(nats_url) == before


def test_demo_on_nats_leaves_the_server_as_it_found_it(
    nats_url: str, nats_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _nats_state(nats_url)
    assert run(["demo", f"{nats_url}?prefix={nats_prefix}", *DEMO]) == 0
    captured = capsys.readouterr()
    assert "all reconciled" in captured.out
    assert "demo left" not in captured.out + captured.err, captured.out
    assert _nats_state(nats_url) == before


def test_ctrl_c_during_the_demo_on_nats_still_leaves_the_server_as_it_found_it(
    nats_url: str, nats_prefix: str
) -> None:
    before = _nats_state(nats_url)
    interrupt_demo_in_its_flash_sale(f"{nats_url}?prefix={nats_prefix}")
    assert _nats_state(nats_url) == before


def test_a_stream_it_made_that_another_program_took_to_is_kept_and_named(
    nats_url: str, nats_prefix: str
) -> None:
    with brokerkit.connect(nats_url, prefix=nats_prefix) as broker:
        broker.publish("mine", "m")  # makes the stream
        with broker.subscribe("mine", group="g") as subscription:
            assert subscription.receive(timeout=5) is not None
        _another_program(nats_url, nats_prefix, make_stream=False)
        broker.purge("mine")
        left = remove_made(broker, ["mine"])
        assert broker.declared.streams == frozenset({nats_prefix})
        assert broker.declared.consumers == frozenset()
    assert len(left) == 1 and left[0].startswith(f"stream {nats_prefix} "), left
    assert "1 message" in left[0] and "1 consumer" in left[0], left
    # its own consumer went; the stream stays, with the other program's consumer and message
    assert _nats_state(nats_url)[nats_prefix] == (frozenset({"theirs"}), 1)


def test_nats_delete_refuses_what_the_broker_did_not_make(nats_url: str, nats_prefix: str) -> None:
    _another_program(nats_url, nats_prefix, make_stream=True)
    with brokerkit.connect(nats_url, prefix=nats_prefix) as broker:
        broker.publish("mine", "m")  # the stream was there: not made by this broker
        assert broker.declared.streams == frozenset()
        with pytest.raises(InvalidOption, match="theirs"):
            broker.delete(frozenset(), frozenset({(nats_prefix, "theirs")}))
        with pytest.raises(InvalidOption, match=nats_prefix):
            broker.delete(frozenset({nats_prefix}), frozenset())
        broker.purge("mine")
    assert _nats_state(nats_url)[nats_prefix] == (frozenset({"theirs"}), 1)


# -- RabbitMQ -----------------------------------------------------------------------


def _vhost() -> str:
    path = BrokerURL.parse(amqp_url()).path
    return (path[1:] if path.startswith("/") else path) or "/"


def _rabbitmq_names(prefix: str) -> tuple[frozenset[str], frozenset[str]]:
    """The exchanges and queues on the RabbitMQ under test named under ``prefix``."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("rabbitmqctl is needed to list RabbitMQ's exchanges and queues")

    def listed(what: str) -> frozenset[str]:
        out = subprocess.run(
            [ctl, "-q", f"list_{what}", "-p", _vhost(), "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        return frozenset(name for name in out.splitlines() if name.startswith(f"{prefix}|"))

    return listed("exchanges"), listed("queues")


@pytest.fixture
def amqp_prefix(rabbitmq: str) -> Iterator[str]:
    """A prefix no other test or program uses; whatever is under it at the end is
    deleted (only if a test failed: a passing one leaves nothing)."""
    prefix = f"bkk-{uuid.uuid4().hex[:12]}"
    yield prefix
    exchanges, queues = _rabbitmq_names(prefix)
    if exchanges or queues:
        delete_names(set(exchanges), set(queues))


def _with_prefix(url: str, prefix: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"


def test_bench_on_rabbitmq_leaves_nothing_it_declared(
    rabbitmq: str, amqp_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _rabbitmq_names(amqp_prefix)
    assert run(["bench", _with_prefix(rabbitmq, amqp_prefix), *BENCH]) == 0
    err = capsys.readouterr().err
    assert "bench left" not in err, _bench_left(err)
    assert _rabbitmq_names(amqp_prefix) == before == (frozenset(), frozenset())


def test_demo_on_rabbitmq_leaves_nothing_it_declared(
    rabbitmq: str, amqp_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _rabbitmq_names(amqp_prefix)
    assert run(["demo", _with_prefix(rabbitmq, amqp_prefix), *DEMO]) == 0
    captured = capsys.readouterr()
    assert "all reconciled" in captured.out
    assert "demo left" not in captured.out + captured.err, captured.out
    assert _rabbitmq_names(amqp_prefix) == before == (frozenset(), frozenset())


def test_rabbitmq_delete_refuses_a_name_it_did_not_declare(rabbitmq: str, amqp_prefix: str) -> None:
    theirs = f"{amqp_prefix}|theirs"
    with raw_connection() as connection:
        channel = connection.channel()
        channel.exchange_declare(theirs, "fanout", durable=True, auto_delete=False)
        channel.close()
    with brokerkit.connect(rabbitmq, prefix=amqp_prefix) as broker:
        broker.publish("mine", "m")
        mine = broker.declared
        assert f"{amqp_prefix}|mine|default" in mine.queues
        with pytest.raises(InvalidOption, match="theirs"):
            broker.delete(frozenset({theirs}), frozenset())
        broker.purge("mine")
        broker.delete(*mine)
        assert broker.declared == (frozenset(), frozenset())
    assert _rabbitmq_names(amqp_prefix) == (frozenset({theirs}), frozenset())
    with raw_connection() as connection:
        channel = connection.channel()
        with contextlib.suppress(amqp.exceptions.NotFound):
            channel.exchange_delete(theirs)


def test_rabbitmq_delete_keeps_a_queue_in_use_and_the_exchange_bound_to_it(
    rabbitmq: str, amqp_prefix: str
) -> None:
    """Declaring is idempotent: a queue this broker declared may be a group's queue that
    other processes share. One that still holds a message (or has a consumer) is kept,
    and so are the exchange it is bound to and its dead-letter topic's queue and
    exchanges (RabbitMQ and brokerkit dead-letter its messages there): all stay in
    ``declared``, and a dead letter still lands."""
    queue = f"{amqp_prefix}|busy|default"
    with brokerkit.connect(rabbitmq, prefix=amqp_prefix) as broker:
        broker.publish_many("busy", ["dead", "waiting"])
        declared = broker.declared
        with pytest.raises(BrokerError, match="kept: it still has 2 message"):
            broker.delete(*declared)
        for name in sorted(declared.queues):  # one a call, the dead-letter topic's first
            with pytest.raises(BrokerError, match="kept"):
                broker.delete(frozenset(), frozenset({name}))
        # all stay declared: the busy queue, its exchange, and its dead-letter topic's
        # queue and exchanges (which its dead letters need)
        assert broker.declared == declared
        with broker.subscribe("busy") as subscription:
            rejected = subscription.receive(timeout=10)
            assert rejected is not None and rejected.body == "dead"
            rejected.nack(requeue=False)
        assert broker.purge(broker.dead_letter_topic("busy")) == 1
        with raw_connection() as connection:
            channel = connection.channel()
            _, waiting, _ = channel.queue_declare(queue, passive=True)
            channel.close()
        assert waiting == 1
        assert broker.purge("busy") == 1
        broker.delete(*broker.declared)
        assert broker.declared == (frozenset(), frozenset())
    assert _rabbitmq_names(amqp_prefix) == (frozenset(), frozenset())


def test_rabbitmq_delete_keeps_the_dead_letter_topic_of_a_topic_another_process_reads(
    rabbitmq: str, amqp_prefix: str
) -> None:
    """Another process's group queue is bound to the topic's exchange, which is kept:
    so are the dead-letter topic's queue and exchange, and that process's rejects still
    land there (its queue is invisible to this broker but for the exchange it keeps)."""
    with (
        brokerkit.connect(rabbitmq, prefix=amqp_prefix) as mine,
        brokerkit.connect(rabbitmq, prefix=amqp_prefix) as theirs,
    ):
        mine.publish("orders", "before")
        theirs.subscribe("orders", group="billing").close()  # declares and binds their queue
        assert mine.purge("orders") == 1
        with pytest.raises(BrokerError, match="kept"):
            mine.delete(*mine.declared)
        kept = {f"{amqp_prefix}|orders{dlq}" for dlq in ("", ".dlq", ".dlq.dlq")}
        assert mine.declared.exchanges == kept
        mine.publish("orders", "rejected")
        with theirs.subscribe("orders", group="billing") as subscription:
            delivery = subscription.receive(timeout=10)
            assert delivery is not None and delivery.body == "rejected"
            delivery.nack(requeue=False)  # raised NOT_FOUND once the .dlq exchange went
        assert theirs.purge(theirs.dead_letter_topic("orders")) == 1


# -- memory:// ----------------------------------------------------------------------


def test_the_readme_demo_still_reconciles_on_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["demo", *DEMO]) == 0
    out = capsys.readouterr().out
    assert "brokerkit demo on memory://" in out and "all reconciled" in out
