"""The hooks a brokerkit plugin can implement.

A plugin is a module or object with functions decorated by
:data:`brokerkit.hookimpl` and named after the hooks below. Register it under the
``brokerkit.plugins`` entry-point group::

    [project.entry-points."brokerkit.plugins"]
    mybackend = "mybackend.plugin"

Hooks grow by gaining arguments; an implementation may accept fewer arguments
than the spec, so plugins written today keep working.

Two kinds of hooks: *registration* hooks (backends, commands), called once, and
*message* hooks (``brokerkit_publish_start`` to ``brokerkit_on_lease_lost``), called
for every message by the sync and asyncio APIs alike. Message hooks are plain
functions (one written ``async def`` is never called: its plugin's registration logs
an error on ``brokerkit.hooks``): keep them quick, never block. One that raises is
logged on ``brokerkit.hooks`` and swallowed; the other plugins' implementations of
that hook are still called. The sequences they are handed (``messages``,
``deliveries``) are tuples, the same to every plugin. With no implementation they cost
one flag read per message; a plugin registered later through
:func:`brokerkit.get_plugin_manager` is seen from the next message on. A start hook
and its end hook get the same ``scope`` dict, theirs to fill (a span, a start time);
they are pairs rather than a pluggy wrapper because the work they surround may be an
``await``, which a wrapper, a plain generator, cannot span. An end hook is called for
the plugins that were registered when its publish or delivery started, and for them
alone: a plugin unregistered meanwhile still ends what it started (at the operation's
own end, however much later), and one registered meanwhile is not handed the end of an
operation it did not see start (nor the start hook's ``scope``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer

    from brokerkit._message import Message
    from brokerkit._registry import BackendRegistry

__all__ = ["hookimpl", "hookspec"]

#: Marks a hook specification (brokerkit's own use).
hookspec = pluggy.HookspecMarker("brokerkit")
#: Marks a plugin's hook implementation: ``@brokerkit.hookimpl``.
hookimpl = pluggy.HookimplMarker("brokerkit")


@hookspec
def brokerkit_register_backends(registry: BackendRegistry) -> None:
    """Register the backends this plugin provides.

    Called once per process, the first time brokerkit needs to know its backends
    (the first :func:`brokerkit.connect` or :func:`brokerkit.list_backends`).

    Call ``registry.add(BrokerClass)``, or ``registry.add("package.module:Class",
    schemes=(...))`` to register lazily, so that the backend's driver is imported
    only when a URL asks for it. A scheme that another plugin already claims is an
    error, unless ``replace=True``.

    For :func:`brokerkit.aio.connect`, pass the backend's native asyncio class as
    ``aio=AsyncClass`` (or ``aio="package.module:AsyncClass"``); without one, the
    asyncio API runs the sync class's primitives in worker threads. A backend whose
    driver is asyncio-only registers ``brokerkit.aio.bridged(AsyncClass)`` as its sync
    class. (``aio`` was added to ``registry.add`` in 0.2; hooks and their arguments only
    ever grow.)

    :param registry: the :class:`~brokerkit.BackendRegistry` to add to.
    :return: nothing; results are ignored.
    """


@hookspec
def brokerkit_register_commands(cli: typer.Typer) -> None:
    """Add commands to the ``brokerkit`` command line.

    Called each time the ``brokerkit`` command starts, after the built-in commands
    are added (it needs the ``cli`` extra, so only then is typer imported).

    Decorate functions with ``@cli.command()``, or add a group of commands with
    ``cli.add_typer(sub_app, name="...")``. Do not reuse a built-in command's name.
    Write data to stdout and progress to stderr; raise a
    :class:`~brokerkit.BrokerError` to fail with one line on stderr and exit status 1.

    :param cli: the ``typer.Typer`` application of the ``brokerkit`` command.
    :return: nothing; results are ignored.
    """


@hookspec
def brokerkit_publish_start(
    broker: Any, topic: str, headers: dict[str, str], count: int, scope: dict[str, Any]
) -> None:
    """A publish (or ``publish_many``) of ``count`` messages to ``topic`` begins.

    Called after the topic and bodies are checked, before anything is sent. Add to
    ``headers`` (a fresh dict: the caller's, checked) to give every message of the
    call more headers; a trace context goes here. Keys and values must be str, and a
    name may not start with ``x-dead-letter-``: a header that breaks these rules is
    left out, logged as an error naming the plugin, and the publish goes on.

    :param broker: the :class:`~brokerkit.Broker` or :class:`~brokerkit.aio.AsyncBroker`.
    :param topic: the topic published to.
    :param headers: the headers every message of this call will carry; mutable.
    :param count: how many messages the call publishes (1 for ``publish``).
    :param scope: this call's scratch dict, passed again to :func:`brokerkit_publish_end`.
    """


@hookspec
def brokerkit_publish_end(
    broker: Any,
    topic: str,
    messages: Sequence[Message],
    error: BaseException | None,
    scope: dict[str, Any],
) -> None:
    """The publish begun by :func:`brokerkit_publish_start` ended.

    :param messages: the messages as sent (ids, headers as stored); empty when the
        error came before they were built.
    :param error: None if they were stored, else the exception the caller gets.
    :param scope: the dict :func:`brokerkit_publish_start` saw.
    """


@hookspec
def brokerkit_deliver_start(delivery: Any, scope: dict[str, Any]) -> None:
    """A delivery is handed to the application: returned by ``receive``, yielded by
    ``consume``, or passed to a worker's handler.

    :param delivery: the :class:`~brokerkit.Delivery` (or asyncio twin); read
        ``delivery.headers``, ``.attempt``, ``.subscription.group``.
    :param scope: the delivery's scratch dict, passed again to
        :func:`brokerkit_deliver_end`. Under the key ``"brokerkit.handler_context"``,
        a list of callables that each return a context manager, a hook may ask a
        worker to run the handler inside them (the OpenTelemetry plugin makes the
        delivery's span current so): ``scope.setdefault("brokerkit.handler_context",
        []).append(factory)``.
    """


@hookspec
def brokerkit_deliver_end(
    delivery: Any, outcome: str, error: BaseException | None, scope: dict[str, Any]
) -> None:
    """The application is done with a delivery: called once per delivery (for the
    plugins registered when it started, even if since unregistered), at the first
    of its settlement (``"ack"``, ``"nack"``, ``"dead-letter"``, ``"lease-lost"``) or a
    worker giving up on settling it (``"unsettled"``, where the worker could neither
    settle it nor hand it back).

    A delivery from a ``consume`` loop or a ``for`` loop over a subscription, on a
    backend with ACK, ends at its settlement however much later (a batch
    ``broker.ack(*gathered)`` reports each ``"ack"``); one never settled ends
    ``"unsettled"`` when its subscription closes (leaving ``consume``'s loop closes
    it), and one the application dropped unsettled and the garbage collector took
    before then never ends. On a backend without ACK (nothing can settle it later) it
    ends ``"unsettled"`` as the loop moves on to the next delivery or ends.

    One from ``receive`` ends at its settlement (an ack or a nack, however much later:
    a batch ``broker.ack(*received)`` reports each ``"ack"``, and deliveries that
    several threads or tasks receive from one subscription end each at its own). On a
    backend with ACK that is all. On a backend without ACK, where an ack or a nack only
    marks it settled (and ends it all the same), one never settled ends
    ``"unsettled"`` when the application lets it go or when its subscription or broker
    closes, whichever comes first, once; the subscription holds it weakly until then,
    keeping nothing alive. One the garbage collector took ends shortly after, never
    inside the collection: in a thread of brokerkit's, or before the next delivery's
    start or settlement, whichever comes first; ``delivery`` is then a stand-in of the
    same message, subscription, attempt and receipt.

    :param outcome: ``"ack"``, ``"nack"``, ``"dead-letter"``, ``"unsettled"`` or
        ``"lease-lost"`` (a settlement refused with :class:`~brokerkit.StaleDelivery`).
    :param error: what the handler raised (a worker's), or the settlement's error.
    :param scope: the dict :func:`brokerkit_deliver_start` saw.
    """


@hookspec
def brokerkit_on_ack(deliveries: Sequence[Any]) -> None:
    """Deliveries were acked (after the backend confirmed; stale ones excluded)."""


@hookspec
def brokerkit_on_nack(deliveries: Sequence[Any], requeue: bool) -> None:
    """Deliveries were nacked (after the backend confirmed; stale ones excluded).

    :param requeue: what the caller asked; see :func:`brokerkit_on_dead_letter` for
        those that went to the dead-letter topic.
    """


@hookspec
def brokerkit_on_dead_letter(deliveries: Sequence[Any], reason: str) -> None:
    """Deliveries went to their topic's dead-letter topic, as far as brokerkit knows
    it: a ``nack(requeue=False)`` (``reason="rejected"``), or a nack at
    ``max_deliveries`` attempts (``reason="max_deliveries"``); ``reason`` is the
    caller's own when it gave one (``nack(..., reason="...")``). A backend that
    dead-letters on its own (an unsettled delivery past ``max_deliveries``, found by a
    rescue) does not call it: count dead letters from ``inspect`` for those.
    """


@hookspec
def brokerkit_on_lease_lost(deliveries: Sequence[Any]) -> None:
    """These deliveries' leases are gone and the message may be with another consumer:
    settling or extending them failed with :class:`~brokerkit.StaleDelivery`, a
    background renewal found them gone, or (kombu+amqp) they were fetched but not
    handed out yet when their connection was lost or their lease ran out, and were
    dropped from the subscription's buffer (no ``brokerkit_deliver_start`` came for
    them). Once per delivery."""
