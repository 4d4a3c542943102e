"""The typer application, plugin commands, and the one place errors are shown."""

from __future__ import annotations

import os
import sys

import typer

from brokerkit._plugins import plugin_manager
from brokerkit.cli import _admin, _check, _messaging, _tools
from brokerkit.cli._output import redact
from brokerkit.exceptions import BrokerError, PluginError

__all__ = ["DEBUG_ENV", "build_app", "run"]

#: Set to 1 to see the traceback of an error instead of its one line.
DEBUG_ENV = "BROKERKIT_DEBUG"


def build_app() -> typer.Typer:
    """The ``brokerkit`` application: the built-in commands, then every plugin's."""
    app = typer.Typer(
        name="brokerkit",
        help="Publish, consume and inspect messages on any brokerkit URL; "
        "run the demo, the contract suite and benchmarks.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )
    for module in (_admin, _messaging, _check, _tools):
        module.register(app)
    manager = plugin_manager()
    for impl in manager.hook.brokerkit_register_commands.get_hookimpls():
        try:
            impl.function(cli=app)
        except Exception as exc:
            raise PluginError(
                f"plugin {impl.plugin_name!r} failed to add its commands: {exc}"
            ) from exc
    return app


def run(argv: list[str]) -> int:
    """Run the command line ``argv``; return the exit status. Errors are one line
    on stderr; a traceback only with ``BROKERKIT_DEBUG=1``.

    Usage errors, ``--help`` and Ctrl-C are typer's to report (status 2, 0, 130).
    """
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        command = typer.main.get_command(build_app())
        command.main(args=argv, prog_name="brokerkit", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except (BrokerError, OSError) as exc:
        if debug:
            raise
        _fail(str(exc), argv)
        return 1
    except Exception as exc:
        if debug:
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for details)", argv)
        return 1
    return 0


def _fail(message: str, argv: list[str]) -> None:
    sys.stderr.write(f"brokerkit: error: {redact(message, argv)}\n")
    sys.stderr.flush()
