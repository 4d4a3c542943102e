"""The RabbitMQ the kombu bridge's tests run against, and clean-up of what they create.

The tests use the RabbitMQ at ``BROKERKIT_TEST_AMQP_URL`` (default: the local service,
``kombu+amqp://guest:guest@127.0.0.1:5672/``). Each test gets a prefix of its own, so
every exchange and queue it declares is new, and deletes exactly those afterwards:
never a name another test or program made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import amqp.exceptions
import kombu
import pytest

import brokerkit
from brokerkit._url import BrokerURL

#: Point the kombu tests at another RabbitMQ.
AMQP_URL_ENV = "BROKERKIT_TEST_AMQP_URL"
DEFAULT_AMQP_URL = "kombu+amqp://guest:guest@127.0.0.1:5672/"


def amqp_url() -> str:
    """The ``kombu+amqp://`` URL of the RabbitMQ under test."""
    return os.environ.get(AMQP_URL_ENV, DEFAULT_AMQP_URL)


def raw_connection(url: str | None = None) -> kombu.Connection:
    """A plain kombu connection to the RabbitMQ under test."""
    parsed = BrokerURL.parse(url or amqp_url())
    vhost = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    return kombu.Connection(
        hostname=parsed.host or "localhost",
        port=parsed.port or 5672,
        userid=parsed.username,
        password=parsed.password,
        virtual_host=vhost or "/",
        transport="pyamqp",
        connect_timeout=5,
    )


def publish_raw(exchange: str, messages: list[tuple[Any, str | bytes]]) -> None:
    """Publish py-amqp ``(message, routing_key)`` pairs to ``exchange`` as another
    program would (none of brokerkit's code), each confirmed by RabbitMQ before the
    next: unconfirmed publishes on a channel closed right after may be dropped (a
    quorum queue under load took 2 of 4, and the test waited for the others)."""
    with raw_connection() as connection:
        channel = connection.channel()
        for message, routing_key in messages:
            channel.basic_publish_confirm(message, exchange=exchange, routing_key=routing_key)
        channel.close()


def exists(kind: str, name: str) -> bool:
    """Whether the ``"queue"`` or ``"exchange"`` ``name`` exists on the RabbitMQ under
    test (a passive declare: it makes nothing)."""
    with raw_connection() as connection:
        channel = connection.channel()
        try:
            if kind == "queue":
                channel.queue_declare(name, passive=True)
            else:
                channel.exchange_declare(name, "fanout", passive=True)
        except amqp.exceptions.NotFound:  # (it closed the channel)
            return False
        channel.close()
        return True


def close_and_delete(brokers: list[Any]) -> None:
    """Close these kombu+amqp brokers and delete every exchange and queue they declared."""
    exchanges: set[str] = set()
    queues: set[str] = set()
    for broker in brokers:
        broker.close()
        exchanges |= broker.declared.exchanges
        queues |= broker.declared.queues
    delete_names(exchanges, queues)


def delete_names(exchanges: set[str], queues: set[str]) -> None:
    """Delete these queues and exchanges (those that still exist)."""
    with raw_connection() as connection:
        for name in sorted(queues):
            channel = connection.channel()
            channel.queue_delete(name)
            channel.close()
        for name in sorted(exchanges):
            channel = connection.channel()
            channel.exchange_delete(name)
            channel.close()


def close_connections(connection_name: str) -> int:
    """Make RabbitMQ close the connections named ``connection_name`` (as an operator's
    ``rabbitmqctl close_connection`` would); return how many it closed."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl is needed to close a connection from the server side")
    listed = subprocess.run(
        [ctl, "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    pids = [line.split("\t", 1)[0] for line in listed.splitlines() if connection_name in line]
    for pid in pids:
        subprocess.run(
            [ctl, "-q", "close_connection", pid, "brokerkit fault test"],
            capture_output=True,
            timeout=60,
            check=True,
        )
    return len(pids)


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """The URL of a reachable RabbitMQ; the test is skipped, saying so, without one."""
    url = amqp_url()
    try:
        with raw_connection(url) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.skip(
            f"RabbitMQ is not reachable at {BrokerURL.parse(url)} ({type(exc).__name__}); "
            f"start it or set {AMQP_URL_ENV}"
        )
    return url


@pytest.fixture
def kombu_broker(rabbitmq: str) -> Iterator[Callable[..., Any]]:
    """``kombu_broker(**options)``: a new ``kombu+amqp`` broker under this test's own
    prefix; every broker is closed, and every exchange and queue they declared is
    deleted, when the test ends."""
    prefix = f"bkk-{uuid.uuid4().hex[:12]}"
    made: list[Any] = []

    def factory(**options: Any) -> Any:
        options.setdefault("prefix", prefix)
        broker = brokerkit.connect(rabbitmq, **options)
        made.append(broker)
        return broker

    try:
        yield factory
    finally:
        close_and_delete(made)
