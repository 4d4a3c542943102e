"""Deleting what one test of ``brokerkit check`` made off Redis, when the test ends.

``brokerkit check`` gives every test a prefix of its own under the run's
(``brokerkit-check-<run>-<12 random hex digits>``, see :mod:`brokerkit.cli._check`),
so that what the test's brokers made is named under it, and nothing else is. Redis keys
are removed by the run's prefix at its end (:mod:`brokerkit.cli._scratch`); the child pytest calls
:func:`remove_made` as each test ends for the backends whose server keeps names that
cannot be listed by a prefix:

- ``kombu+amqp`` (``kombu+amqps``, ``kombu+pyamqp``): every queue, then every
  exchange, the test's brokers declared (their ``declared``, and the default queue of
  each exchange's topic), deleted over a connection of its own, messages and all
  (RabbitMQ cannot list names over AMQP);
- ``kombu+redis`` and ``kombu+memory``: the same, through the ``delete`` of a broker of
  the test's prefix (lists, bindings, binding sets);
- ``nats``: the JetStream stream named by the test's prefix, with its consumers and
  messages.

Each name is checked to lie under the test's prefix before it is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import brokerkit
from brokerkit._broker import DEFAULT_GROUP
from brokerkit._url import BrokerURL

__all__ = ["AMQP", "NATS", "VIRTUAL", "cleaner_of", "deferring_interrupts", "remove_made"]

#: The schemes whose brokers' queues and exchanges are deleted over AMQP.
AMQP = frozenset(["kombu+amqp", "kombu+amqps", "kombu+pyamqp"])
#: The schemes of kombu's virtual transports.
VIRTUAL = frozenset(["kombu+memory", "kombu+redis"])
#: The scheme whose test's stream is deleted.
NATS = frozenset(["nats"])

#: What separates the parts of a kombu name, ``<prefix>|<topic>|<group>``.
SEPARATOR = "|"
#: What a connection for deleting is named on the server.
_NAME = "brokerkit-check-cleanup"


def cleaner_of(scheme: str) -> str | None:
    """``"amqp"``, ``"virtual"`` or ``"nats"``: how :func:`remove_made` deletes what
    a test made on ``scheme``; None where it deletes nothing."""
    for kind, schemes in (("amqp", AMQP), ("virtual", VIRTUAL), ("nats", NATS)):
        if scheme in schemes:
            return kind
    return None


@contextlib.contextmanager
def deferring_interrupts() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back until the block ends, then raise KeyboardInterrupt
    (in the main thread; elsewhere, the block runs as it is): the deletion of what a
    test made runs to its end when the run is stopped, which sends SIGINT to the child
    as the test or its deletion is under way (and kills it if it has not ended some
    seconds later)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def remove_made(brokers: Sequence[Any], prefix: str) -> list[str]:
    """Delete what ``brokers`` (one test's, made with the option ``prefix``, closed by
    now) made on their server; return a line naming each thing left, with why. Never
    raises."""
    if not brokers:
        return []
    url: BrokerURL = brokers[0].url
    kind = cleaner_of(url.scheme)
    try:
        if kind == "nats":
            return _remove_stream(url, brokers[0].options, prefix)
        if kind is None:
            return []
        exchanges: set[str] = set()
        queues: set[str] = set()
        for broker in brokers:
            declared = broker.declared
            exchanges |= declared[0]
            queues |= declared[1]
        head = f"{prefix}{SEPARATOR}"
        outside = sorted(n for n in exchanges | queues if not n.startswith(head))
        left = [f"{n}: not under the test's prefix {prefix!r}, so not deleted" for n in outside]
        exchanges = {n for n in exchanges if n.startswith(head)}
        queues = {n for n in queues if n.startswith(head)}
        if kind == "amqp":
            # The default queue of each topic whose exchange was declared: declared
            # right after it, and not named in ``declared`` when a Ctrl-C cut its
            # declaration short (deleting one that does not exist does nothing).
            queues |= {f"{e}{SEPARATOR}{DEFAULT_GROUP}" for e in exchanges}
            return left + _remove_amqp(url, brokers[0].options, exchanges, queues)
        return left + _remove_virtual(url, prefix, exchanges, queues)
    except Exception as exc:
        return [f"what the test made under the prefix {prefix!r} ({type(exc).__name__}: {exc})"]


def _remove_amqp(url: BrokerURL, options: Any, exchanges: set[str], queues: set[str]) -> list[str]:
    """Delete ``queues``, then ``exchanges``, on the RabbitMQ of ``url``, each on a
    channel of its own (a refusal closes the channel)."""
    from brokerkit.backends.kombu._connection import kombu_connection

    named = [("queue", q) for q in sorted(queues)] + [("exchange", e) for e in sorted(exchanges)]
    if not named:
        return []
    connection = kombu_connection(url, options, _NAME)
    try:
        connection.ensure_connection(max_retries=1)
    except Exception as exc:
        connection.release()
        return [f"{kind} {name} (could not connect: {type(exc).__name__})" for kind, name in named]
    left: list[str] = []
    try:
        for kind, name in named:
            try:
                channel = connection.channel()
                try:
                    if kind == "queue":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                finally:
                    if channel.is_open:
                        channel.close()
            except Exception as exc:
                left.append(f"{kind} {name} ({type(exc).__name__}: {exc})")
    finally:
        connection.release()
    return left


def _remove_virtual(
    url: BrokerURL, prefix: str, exchanges: set[str], queues: set[str]
) -> list[str]:
    """Delete ``queues`` and ``exchanges`` through a broker of ``prefix`` (kombu's
    virtual transports delete whatever is named under their prefix)."""
    if not exchanges and not queues:
        return []
    with brokerkit.connect(url, prefix=prefix) as broker:
        try:
            broker.delete(frozenset(exchanges), frozenset(queues))  # type: ignore[attr-defined]
        except Exception as exc:
            return [
                f"{len(queues)} queue(s) and {len(exchanges)} exchange(s) under {prefix!r} ({exc})"
            ]
    return []


def _remove_stream(url: BrokerURL, options: Any, stream: str) -> list[str]:
    """Delete the JetStream stream ``stream`` (the test's prefix), whatever it holds;
    one that does not exist (the test made none) is done."""
    from brokerkit.backends.nats._client import STREAM_NOT_FOUND, NatsClient

    async def delete() -> list[str]:
        client = NatsClient(
            url,
            connect_timeout=options.connect_timeout,
            reconnect_timeout=options.connect_timeout,
        )
        try:
            answer = await client.api(f"STREAM.DELETE.{stream}", None, f"delete {stream!r}")
        finally:
            await client.close()
        error = answer.get("error")
        if error and error.get("err_code") != STREAM_NOT_FOUND:
            return [f"stream {stream} ({error.get('description')})"]
        return []

    try:
        return asyncio.run(delete())
    except Exception as exc:
        return [f"stream {stream} ({type(exc).__name__}: {exc})"]
