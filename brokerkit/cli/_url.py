"""How every command gets its broker URL: the first argument, or ``BROKERKIT_URL``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

__all__ = ["URL_ENV", "UrlArg", "UrlFirstCommand", "command"]

#: The broker URL used when a command's URL argument is left out. Prefer it to the
#: argument for a URL with a password: the environment does not show in ``ps``.
URL_ENV = "BROKERKIT_URL"

UrlArg = Annotated[
    str,
    typer.Argument(
        metavar="URL",
        help=f"The broker URL, such as redis+stream://localhost/0; default: ${URL_ENV}.",
        show_default=False,
    ),
]


class UrlFirstCommand(TyperCommand):
    """A command whose first argument is a broker URL that may come from ``BROKERKIT_URL``.

    A first positional argument without ``://`` is not a URL: when ``BROKERKIT_URL`` is
    set, its value is taken as the URL and the arguments given move one place on
    (``brokerkit inspect orders`` is ``brokerkit inspect $BROKERKIT_URL orders``).
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        url = os.environ.get(URL_ENV, "")
        if url and not self._starts_with_url(ctx, args):
            args = [url, *args]
        return super().parse_args(ctx, args)

    def _starts_with_url(self, ctx: Any, args: list[str]) -> bool:
        first = next((p for p in self.params if p.param_type_name == "argument"), None)
        if first is None:
            return True
        try:
            values, _, _ = self.make_parser(ctx).parse_args(args=list(args))
        except Exception:  # the real parse below reports it
            return True
        value = values.get(first.name)
        return isinstance(value, str) and "://" in value


def command(app: typer.Typer, name: str, function: Callable[..., Any]) -> None:
    """Add ``function`` to ``app`` as the command ``name`` that takes a URL first."""
    app.command(name, cls=UrlFirstCommand)(function)
