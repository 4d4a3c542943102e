"""How every command gets its broker URL: the first argument, or ``BROKERKIT_URL``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

__all__ = ["URL_ENV", "MaskingGroup", "UrlArg", "UrlFirstCommand", "command", "looks_like_a_url"]

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

    A first positional argument that does not look like a URL is not one: when
    ``BROKERKIT_URL`` is set, its value is taken as the URL and the arguments given move
    one place on (``brokerkit inspect orders`` is ``brokerkit inspect $BROKERKIT_URL
    orders``). An argument looks like a URL when it holds ``://``, starts with a known
    scheme and a colon (``redis+stream:/...``, a mistyped ``://``) or holds ``@`` (where
    a password would end): such an argument is always read as the URL, so that a
    mistyped one is refused with its password masked rather than taken for a topic.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # The secrets of the URL are masked by MaskingGroup, for every command.
        url = os.environ.get(URL_ENV, "")
        if not self._starts_with_url(ctx, args):
            if url.strip():
                args = [url, *args]
            elif self._one_short(ctx, args):
                # The arguments after the URL, without it (``inspect orders``): the
                # first is no URL, so the URL is what is missing, not the last one.
                raise _USAGE_ERROR(_missing_url(self._positionals(ctx, args)), ctx=ctx)
        return super().parse_args(ctx, args)

    def _positionals(self, ctx: Any, args: list[str]) -> list[Any] | None:
        """The values ``args`` give the positional arguments, in their order (None for
        one not given); None if they do not parse (the real parse reports it)."""
        try:
            values, _, _ = self.make_parser(ctx).parse_args(args=list(args))
        except Exception:
            return None
        return [values.get(p.name) for p in self.params if p.param_type_name == "argument"]

    def _starts_with_url(self, ctx: Any, args: list[str]) -> bool:
        given = self._positionals(ctx, args)
        if not given:  # no positional argument, or arguments that do not parse
            return True
        value = given[0]
        if not isinstance(value, str) or not looks_like_a_url(value):
            return False
        if "://" not in value:
            _refuse_mistyped(value)
        return True

    def _one_short(self, ctx: Any, args: list[str]) -> bool:
        """Whether ``args`` give a first positional argument (not the URL: see
        :meth:`_starts_with_url`) but not all of them, and are no request for help."""
        if ctx.resilient_parsing or any(a in ctx.help_option_names for a in args):
            return False
        given = self._positionals(ctx, args) or []
        return bool(given) and given[0] is not None and None in given


class MaskingGroup(TyperGroup):
    """The ``brokerkit`` group: a Ctrl-C that ends a command says so (see
    :meth:`invoke`); and while any of its commands runs, what it writes on
    stderr (a note, a log line quoting a driver's error) masks the secrets of every URL
    among its arguments and of ``BROKERKIT_URL`` (see
    :func:`~brokerkit.cli._output.hide_secrets_of`): one place for every command, the
    built-in ones, whether they take ``BROKERKIT_URL`` or not (``worker``, ``demo``),
    and a plugin's. A usage error is masked by :func:`~brokerkit.cli._app.run`."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a KeyboardInterrupt out of it (a Ctrl-C before the command
        took Ctrl-C over, as kombu connects, or a second one) ends it with status 130
        and the line ``interrupted`` on stderr, where typer would end it with 130 and
        not a word.

        :raises typer.Exit: status 130, after such a Ctrl-C.
        """
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            sys.stderr.flush()
            raise typer.Exit(130) from None

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        from brokerkit.cli._output import hide_secrets_of

        given = [*args, os.environ.get(URL_ENV, "")]  # parsing takes them out of args
        rest = super().parse_args(ctx, args)
        # registered once the arguments parse: the context is closed (and the secrets
        # forgotten) when the command ends, however it ends
        ctx.call_on_close(hide_secrets_of(given))
        return rest


def _missing_url(given: list[Any] | None) -> str:
    """The usage error of arguments given without their URL; one whose first holds a
    colon, as ``localhost:6379`` does, is named: a URL without its scheme."""
    first = given[0] if given else None
    if isinstance(first, str) and ":" in first:
        return (
            f"Missing argument 'URL' ({first!r} is not a broker URL: it needs a scheme "
            "and '://', as in 'redis+stream://localhost:6379/0')."
        )
    return "Missing argument 'URL'."


#: click's UsageError (typer's own copy of click, or click): exit status 2.
_USAGE_ERROR: Any = typer.BadParameter.__mro__[1]


def looks_like_a_url(argument: str) -> bool:
    """Whether ``argument`` is to be read as a broker URL rather than as a topic.

    True for ``scheme://...``; for a known scheme followed by a colon, as in a mistyped
    ``redis+stream:/:pw@host/0``; and for anything holding ``@``, which ends the
    user-info (and its password) of a URL, scheme or not (``:pw@host``).
    """
    if "://" in argument or "@" in argument:
        return True
    scheme, colon, _ = argument.partition(":")
    return bool(colon) and scheme.lower() in _known_schemes()


def _known_schemes() -> frozenset[str]:
    """The registered URL schemes, and the bare Redis ones a URL may be mistyped with."""
    from brokerkit._plugins import _registry
    from brokerkit.exceptions import BrokerError

    try:
        schemes = _registry().schemes()
    except BrokerError:  # a broken plugin: connect() reports it
        schemes = []
    return frozenset([*schemes, "redis", "rediss", "unix"])


def _refuse_mistyped(argument: str) -> None:
    """Raise the masked :class:`~brokerkit.InvalidURL` for an argument that looks like a
    URL but does not parse, saying why it was not taken for a topic."""
    from brokerkit._url import BrokerURL
    from brokerkit.exceptions import InvalidURL

    try:
        BrokerURL.parse(argument)
    except InvalidURL as exc:
        raise InvalidURL(
            f"{exc}. (With ${URL_ENV} set, a first argument that holds '@' or starts "
            "with a scheme and ':' is still read as the URL; to name a topic like that, "
            "give the URL first.)"
        ) from None


def command(app: typer.Typer, name: str, function: Callable[..., Any]) -> None:
    """Add ``function`` to ``app`` as the command ``name`` that takes a URL first."""
    app.command(name, cls=UrlFirstCommand)(function)
