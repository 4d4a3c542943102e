"""The hooks a brokerkit plugin can implement.

A plugin is a module or object with functions decorated by
:data:`brokerkit.hookimpl` and named after the hooks below. Register it under the
``brokerkit.plugins`` entry-point group::

    [project.entry-points."brokerkit.plugins"]
    mybackend = "mybackend.plugin"

Hooks grow by gaining arguments; an implementation may accept fewer arguments
than the spec, so plugins written today keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

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
    (the first :func:`brokerkit.connect` or :func:`brokerkit.backends`).

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
