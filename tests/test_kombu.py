"""kombu+amqp beyond the contract suite: registration, URLs and errors, the names it
declares, messages other programs wrote, inspect and purge, against the real RabbitMQ."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from amqp import Message as AmqpMessage

import brokerkit
from brokerkit.exceptions import ConnectionFailed, IncompatibleTopic, InvalidOption
from tests.kombu_rabbitmq import delete_names, kombu_broker, publish_raw, rabbitmq, raw_connection

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


def test_registered_lazily_with_an_install_hint() -> None:
    code = (
        "import sys, brokerkit; brokerkit.connect('memory://').close(); "
        "info = {s: b for b in brokerkit.list_backends() for s in b.schemes}['kombu+amqp']; "
        "print(info.plugin, 'kombu' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["brokerkit.backends.kombu", "False"], (
        "kombu+amqp is registered by the built-in plugin, and import brokerkit never imports kombu"
    )


def test_unknown_option_lists_the_valid_ones(rabbitmq: str) -> None:
    with pytest.raises(InvalidOption, match="reconnect_timeout"):
        brokerkit.connect(rabbitmq, reconect_timeout=1)
    with pytest.raises(InvalidOption, match="prefix"):
        brokerkit.connect(rabbitmq, prefix="has|bar")


def test_wrong_password_fails_clearly_and_never_shows_it(rabbitmq: str) -> None:
    url = rabbitmq.replace("guest:guest@", "guest:s3cret-pw-9@")
    with pytest.raises(ConnectionFailed) as caught:
        brokerkit.connect(url, reconnect_timeout=0)
    text = f"{caught.value!s} {caught.value!r} {caught.value.__cause__!r}"
    assert "s3cret-pw-9" not in text, "a password appeared in an error"
    assert "127.0.0.1:5672" in str(caught.value), "the error names the server"


def test_unreachable_server_fails_within_reconnect_timeout() -> None:
    with pytest.raises(ConnectionFailed, match="reconnect_timeout"):
        brokerkit.connect(
            "kombu+amqp://guest:secret-pw-7@127.0.0.1:1/", reconnect_timeout=0.5, connect_timeout=1
        )


def test_vhost_comes_from_the_path(rabbitmq: str) -> None:
    prefix = f"bkk-{uuid.uuid4().hex[:8]}"
    with brokerkit.connect(rabbitmq.rstrip("/") + "/%2F", prefix=prefix) as b:
        b.publish("vhost-check", "x")
        declared = b.declared
    delete_names(set(declared.exchanges), set(declared.queues))
    with pytest.raises(ConnectionFailed):
        brokerkit.connect(rabbitmq.rstrip("/") + "/no-such-vhost", reconnect_timeout=0)


def test_the_vhost_is_the_path_decoded_once(rabbitmq: str) -> None:
    # "%2525" is a percent-encoded "%25": the vhost is "bk%25..." as written once
    # decoded; it was decoded twice, to "bk%..." (RabbitMQ names the vhost it was sent)
    name = f"bk%25{uuid.uuid4().hex[:8]}"
    with pytest.raises(ConnectionFailed) as refused:
        brokerkit.connect(
            rabbitmq.rstrip("/") + "/" + name.replace("%", "%25"), reconnect_timeout=0
        )
    assert f"vhost {name} not found" in str(refused.value), str(refused.value)


def test_names_are_one_exchange_per_topic_and_one_queue_per_group(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    prefix = broker.options.prefix
    broker.subscribe("orders", group="email")
    broker.publish("orders", "x")
    assert broker.declared.exchanges >= {f"{prefix}|orders", f"{prefix}|orders.dlq"}
    assert broker.declared.queues >= {
        f"{prefix}|orders|default",
        f"{prefix}|orders|email",
        f"{prefix}|orders.dlq|default",
    }
    with raw_connection() as connection:
        channel = connection.channel()
        for queue in (f"{prefix}|orders|default", f"{prefix}|orders|email"):
            ok = channel.queue_declare(queue, passive=True)
            assert ok.message_count == 1, f"{queue}: every group's queue gets the message"


def test_a_message_another_program_published_is_read_as_raw(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    subscription = broker.subscribe("sensors")
    raw = AmqpMessage(b"21.5", application_headers={"unit": "C", "n": 3}, message_id="m-1")
    publish_raw(f"{broker.options.prefix}|sensors", [(raw, "")])
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    assert (delivery.id, delivery.payload, delivery.attempt) == ("m-1", b"21.5", 1)
    assert dict(delivery.headers) == {"unit": "C"}, "str-valued AMQP headers become headers"
    delivery.ack()


def test_what_the_server_dead_letters_reaches_the_dlq_topic(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    dead_letters = broker.subscribe(broker.dead_letter_topic("jobs"))
    message_id = broker.publish("jobs", {"n": 1}, headers={"trace-id": "t"})
    with raw_connection() as connection:
        channel = connection.channel()
        got = channel.basic_get(f"{broker.options.prefix}|jobs|default")
        channel.basic_reject(got.delivery_tag, requeue=False)  # RabbitMQ's own DLX
    dead = dead_letters.receive(timeout=5)
    assert dead is not None, "the queue's x-dead-letter-exchange is the dlq topic"
    assert (dead.id, dead.body) == (message_id, {"n": 1})
    assert dead.headers["trace-id"] == "t"
    assert dead.headers["x-dead-letter-reason"] == "rejected"
    assert dead.headers["x-original-topic"] == "jobs"
    dead.ack()


def test_inspect_and_purge(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    worker = broker.subscribe("tasks", group="workers")
    broker.publish_many("tasks", ["a", "b", "c"])
    held = worker.receive(timeout=5)
    assert held is not None
    info = broker.inspect("tasks")
    assert (info.length, info.in_flight, info.dead_lettered) == (3, 1, 0)
    groups = {g.name: (g.pending, g.lag) for g in info.groups}
    assert groups == {"default": (0, 3), "workers": (1, 2)}
    assert info.oldest_in_flight_age is not None and info.oldest_in_flight_age >= 0
    assert broker.purge("tasks") == 5, "purge empties every known group's queue"
    held.ack()
    assert broker.inspect("tasks").length == 0


def test_a_big_batch_is_confirmed_whole(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    ids = broker.publish_many("bulk", range(500))
    assert len(set(ids)) == 500
    assert broker.inspect("bulk").length == 500


def test_an_existing_queue_of_another_kind_is_a_clear_error(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    queue = f"{broker.options.prefix}|legacy|default"
    with raw_connection() as connection:
        connection.channel().queue_declare(queue, durable=True, auto_delete=False)
    try:
        with pytest.raises(IncompatibleTopic, match="quorum"):
            broker.publish("legacy", "x")
        broker.publish("fine", "y")  # the broker carries on after the refusal
    finally:
        delete_names(set(), {queue})


def test_extend_keeps_a_lease_past_the_visibility_timeout(kombu_broker: Factory) -> None:
    # 1 s, not 0.3: the extend comes right after the receive, under that lease (a
    # loaded machine may take 0.3 s in between); the wait below still outlasts it
    holder, other = kombu_broker(visibility_timeout=1.0), kombu_broker(visibility_timeout=1.0)
    mine, theirs = holder.subscribe("slow"), other.subscribe("slow")
    holder.publish("slow", "work")
    delivery = mine.receive(timeout=5)
    assert delivery is not None
    delivery.extend(30)
    assert theirs.receive(timeout=2.5) is None, "an extended lease is not handed out"
    delivery.ack()


def test_big_prefetch_fetches_in_bursts_in_order_and_competing(kombu_broker: Factory) -> None:
    publisher, first, second = kombu_broker(), kombu_broker(), kombu_broker()
    ids = publisher.publish_many("burst", range(60))
    alone = first.subscribe("burst", prefetch=20)
    got = [alone.receive(timeout=5) for _ in range(20)]
    assert [d.id for d in got if d is not None] == ids[:20], "a burst keeps FIFO order"
    assert alone.buffered == 0 and first.inspect("burst").in_flight == 20
    first.ack(*[d for d in got if d is not None])
    mine, theirs = first.subscribe("burst", prefetch=10), second.subscribe("burst", prefetch=10)
    seen: list[str] = []
    for subscription in (mine, theirs, mine, theirs):
        for _ in range(10):
            delivery = subscription.receive(timeout=5)
            assert delivery is not None, f"only {len(seen)} of 40 came"
            seen.append(delivery.id)
            delivery.ack()
    assert sorted(seen) == sorted(ids[20:]), "competing bursts split the messages, none twice"
    assert mine.receive(timeout=0.1) is None and theirs.receive(timeout=0.1) is None


def test_an_idle_subscription_gives_back_what_it_was_pushed(kombu_broker: Factory) -> None:
    """A subscription that waited once keeps its consumer (the next message is pushed
    to it); once it stops reading, the reaper cancels that consumer and hands back
    what was pushed, so an idle subscription holds nothing past the visibility timeout."""
    idle_broker, busy_broker = kombu_broker(visibility_timeout=0.5), kombu_broker()
    idle = idle_broker.subscribe("pushed", prefetch=5)
    assert idle.receive(timeout=0.2) is None  # waits as a consumer, then goes idle
    ids = kombu_broker().publish_many("pushed", ["a", "b", "c"])
    busy = busy_broker.subscribe("pushed")
    got = [busy.receive(timeout=10) for _ in ids]
    assert sorted(d.id for d in got if d is not None) == sorted(ids)
    for delivery in got:
        assert delivery is not None
        delivery.ack()


def test_connecting_under_asyncio_never_blocks_the_event_loop() -> None:
    """kombu connects while the broker is built; under brokerkit.aio that happens in a
    worker thread, so the loop keeps running while the server does not answer."""
    import asyncio
    import time

    import brokerkit.aio

    async def main() -> float:
        worst = 0.0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal worst
            while not done.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                worst = max(worst, time.perf_counter() - before - 0.01)

        tick = asyncio.ensure_future(ticker())
        with pytest.raises(ConnectionFailed):
            await brokerkit.aio.connect(
                "kombu+amqp://guest:guest@127.0.0.1:1/", reconnect_timeout=4
            )
        done.set()
        await tick
        return worst

    # Generous: blocking would stall the loop for the whole reconnect_timeout (4 s; it
    # was 1 s with a bound of 0.5, and a loaded machine stalled this loop 0.74 s).
    assert asyncio.run(main()) < 2.0


@pytest.mark.parametrize("requeue", [False, True])
def test_a_nack_reason_is_recorded_on_the_dead_letter(kombu_broker: Factory, requeue: bool) -> None:
    broker = kombu_broker(max_deliveries=1)
    dead_letters = broker.subscribe(broker.dead_letter_topic("jobs"))
    subscription = broker.subscribe("jobs")
    broker.publish("jobs", "x")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    delivery.nack(requeue=requeue, reason="ValueError: bad order")
    dead = dead_letters.receive(timeout=5)
    assert dead is not None and dead.headers["x-dead-letter-reason"] == "ValueError: bad order"
    dead.ack()
