"""The typer application, plugin commands, and the one place errors are shown."""

from __future__ import annotations

import _thread
import errno
import inspect
import io
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

import brokerkit
from brokerkit._plugins import plugin_manager
from brokerkit.cli import _admin, _check, _dlq, _exporter, _messaging, _observe, _tools, _worker
from brokerkit.cli._output import err, redact, remembering, visible
from brokerkit.cli._url import URL_ENV, MaskingGroup
from brokerkit.exceptions import BrokerError, PluginError

__all__ = ["DEBUG_ENV", "build_app", "run"]

#: Set to 1 to see the traceback of an error instead of its one line, and every log
#: line of the library (DEBUG and up).
DEBUG_ENV = "BROKERKIT_DEBUG"
#: Services, run until stopped, whose log is part of what they show: the library's
#: warnings are printed too (a handler's failure, a topic the exporter could not inspect).
_LOGGING_COMMANDS = frozenset({"worker", "exporter"})
#: The logger whose INFO lines about the worker itself ``worker`` prints as well.
_WORKER_LOGGER = "brokerkit.worker"

# typer's usage errors are click's (vendored by newer typer): reach them through the
# public BadParameter instead of importing click.
_UsageError: type[Exception] = typer.BadParameter.__mro__[1]
_ClickException: type[Exception] = typer.BadParameter.__mro__[2]


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"brokerkit {brokerkit.__version__} (distribution pybrokerkit)\n")
        raise typer.Exit(0)


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Publish, consume and inspect messages on any brokerkit URL; run the demo, the
    contract suite and benchmarks.

    Every command takes the broker URL as its first argument, or from the
    BROKERKIT_URL environment variable when that argument is left out; all but demo,
    which runs on memory:// unless given a URL.
    """


def build_app() -> typer.Typer:
    """The ``brokerkit`` application: the built-in commands, then every plugin's."""
    app = typer.Typer(
        name="brokerkit",
        cls=MaskingGroup,
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for module in (_admin, _observe, _dlq, _exporter, _messaging, _check, _tools, _worker):
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
    """Run the command line ``argv``; return the exit status.

    Every error, a usage error (status 2) or a broker's (status 1), is one line on
    stderr, ``brokerkit: error: ...``, with any URL password masked; a traceback only
    with ``BROKERKIT_DEBUG=1``. Ctrl-C exits 130 (128 + SIGINT), SIGTERM 143.

    The library's log lines (the ``brokerkit`` loggers) go to stderr: errors, one line
    each; warnings too, with tracebacks, for ``worker`` and ``exporter``, and for
    ``worker`` the worker's lines about itself (running, draining after a signal,
    stopped: drained or not, which its exit status after a signal does not say); every
    line with ``BROKERKIT_DEBUG=1``. So a driver retrying a connection does not bury the one
    line that says what failed. A program that configured logging keeps its own.
    """
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        with _closed_streams(), _library_logging(argv, debug), _no_lost_interrupt():
            return _run(argv, debug)
    except KeyboardInterrupt:  # a Ctrl-C as the command ended: still the command's
        sys.stderr.write("interrupted\n")
        return 130


class ClosedStdout(io.TextIOBase):
    """``sys.stdout`` of a command started with stdout closed (``>&-``), which Python
    leaves None: every write, and a flush, raises ``OSError`` (EBADF) naming it, so
    that the command fails as on any stdout it cannot write to, with that error."""

    def write(self, text: str) -> int:
        raise OSError(
            errno.EBADF,
            "stdout is closed (the command was started with >&-): nothing it prints can "
            "be written; redirect it to /dev/null to discard what it prints",
        )

    def flush(self) -> None:
        self.write("")

    def writable(self) -> bool:
        return True


@contextmanager
def _closed_streams() -> Iterator[None]:
    """While a command runs, a standard stream that was closed when Python started
    (``>&-``, ``2>&-``, ``<&-``: None in ``sys``) is one the command can handle:
    stdout a :class:`ClosedStdout`, stderr a sink (the notes are lost, not the exit
    status); a closed stdin stays None. Each closed descriptor (0, 1, 2) gets
    /dev/null, so that no socket the command opens takes its number."""
    streams = {"stdout": sys.stdout, "stderr": sys.stderr}
    opened: list[Any] = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = ClosedStdout()
    if sys.stderr is None:
        sink = open(os.devnull, "w")  # noqa: SIM115 - closed below
        opened.append(sink)
        sys.stderr = sink
    try:
        yield
    finally:
        for name, stream in streams.items():
            if stream is None:
                setattr(sys, name, None)
        for sink in opened:
            sink.close()


#: How long after a Ctrl-C lost in a finaliser it is delivered again: time for the
#: garbage collector's run (and the hook) to end, so that it lands in the command.
_REDELIVER_AFTER = 0.05


@contextmanager
def _no_lost_interrupt() -> Iterator[None]:
    """While a command runs in the main thread, a Ctrl-C is never lost. Python raises
    the KeyboardInterrupt of SIGINT in whatever Python code the main thread runs next;
    when that is a finaliser (a weakref callback or a ``__del__`` that the garbage
    collector runs), Python prints "Exception ignored in ..." and drops it, and the
    command went on as if no Ctrl-C had come (the demo's flash sale ran for minutes).
    Such an interrupt is delivered again, as SIGINT to the main thread, from a timer
    thread, once the finaliser has returned; never once the command has ended (one
    lost as it ended is dropped: the command stops anyway). Any other unraisable
    exception goes to the hook before.

    Only in the main thread, where signals land: a command run in another thread
    leaves ``sys.unraisablehook`` alone. On the way out the hook before is put back
    only if ``sys.unraisablehook`` is still this one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = sys.unraisablehook
    lock = threading.Lock()
    timers: list[threading.Timer] = []
    active = True

    def redeliver() -> None:
        with lock:
            if active:
                _thread.interrupt_main()

    def hook(unraisable: Any) -> None:
        if active and isinstance(unraisable.exc_value, KeyboardInterrupt):
            timer = threading.Timer(_REDELIVER_AFTER, redeliver)
            timer.daemon = True
            with lock:
                timers.append(timer)
            timer.start()
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        with lock:
            active = False
        for timer in timers:
            timer.cancel()
        if sys.unraisablehook is hook:
            sys.unraisablehook = previous


def _run(argv: list[str], debug: bool) -> int:
    # the arguments whose secrets an error line masks, and those a command hid
    with remembering([*argv, os.environ.get(URL_ENV, "")]) as shown:
        return _run_remembering(argv, debug, shown)


def _run_remembering(argv: list[str], debug: bool, shown: list[str]) -> int:
    try:
        command = typer.main.get_command(build_app())
        _unwrap_help(command)
        status = command.main(args=argv, prog_name="brokerkit", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except typer.Abort:
        sys.stderr.write("interrupted\n")
        return 130
    except _ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `brokerkit`: show the help
            context: Any = getattr(exc, "ctx", None)
            sys.stdout.write(context.get_help() + "\n" if context is not None else "")
            return 2
        _fail(_usage_message(exc), shown)
        return int(getattr(exc, "exit_code", 2))
    except (BrokerError, OSError) as exc:
        if debug:
            raise
        _fail(str(exc), shown)
        return 1
    except Exception as exc:
        if debug:
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for details)", shown)
        return 1
    return status if isinstance(status, int) else 0


@contextmanager
def _library_logging(argv: list[str], debug: bool) -> Iterator[None]:
    """While a command runs, the ``brokerkit`` loggers write to stderr as :func:`run`
    promises; left alone when the program has configured logging itself."""
    logger = logging.getLogger("brokerkit")
    if logger.handlers or logging.getLogger().handlers:
        yield
        return
    name = next((arg for arg in argv if not arg.startswith("-")), "")
    # err's file: stderr as it is at each write, the command's URL secrets masked
    handler = logging.StreamHandler(err.file)
    if debug:
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    elif name in _LOGGING_COMMANDS:
        handler.setLevel(logging.INFO if name == "worker" else logging.WARNING)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    else:
        handler.setLevel(logging.ERROR)
        handler.setFormatter(_OneLine(_LOG_FORMAT))
    unless_configured = _UnlessConfigured(handler)
    handler.addFilter(unless_configured)
    previous = logger.level
    if debug:
        logger.setLevel(logging.DEBUG)
    # The worker's lines about itself are INFO records: its logger lets them through
    # (it is left alone if given a level of its own), to this handler only.
    worker_log = logging.getLogger(_WORKER_LOGGER)
    lowered = None
    if name == "worker" and not debug:
        handler.addFilter(_WorkerStates())
        if worker_log.level == logging.NOTSET:
            lowered = _AsBefore(unless_configured)
            worker_log.setLevel(logging.INFO)
            worker_log.addFilter(lowered)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        if lowered is not None:
            worker_log.removeFilter(lowered)
            worker_log.setLevel(logging.NOTSET)


_LOG_FORMAT = "brokerkit: %(levelname)s %(name)s: %(message)s"


class _UnlessConfigured(logging.Filter):
    """Lets a record through the command's own handler only while the program has not
    configured logging: a worker's module may do so when the command imports it, and
    then its handlers alone write the library's records."""

    def __init__(self, own: logging.Handler) -> None:
        super().__init__()
        self._own = own

    def filter(self, record: logging.LogRecord) -> bool:
        others = [h for h in logging.getLogger("brokerkit").handlers if h is not self._own]
        return not (others or logging.getLogger().handlers)


class _WorkerStates(logging.Filter):
    """For ``worker``, on the command's handler: warnings and errors, and the INFO lines
    of the worker about itself (running, draining, stopped), not those about one
    message (a retry, a dead letter), which carry its topic."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return record.name == _WORKER_LOGGER and getattr(record, "topic", None) is None


class _AsBefore(logging.Filter):
    """On the ``brokerkit.worker`` logger, lowered to INFO for ``worker``: once the
    program has configured logging (its module may, when the command imports it), the
    logger passes only what it passed before (its parent's level), so that the
    program's handlers get no line they would not have got."""

    def __init__(self, unless_configured: _UnlessConfigured) -> None:
        super().__init__()
        self._unless_configured = unless_configured

    def filter(self, record: logging.LogRecord) -> bool:
        before = logging.getLogger(_WORKER_LOGGER).parent
        level = before.getEffectiveLevel() if before is not None else logging.WARNING
        return record.levelno >= level or self._unless_configured.filter(record)


class _OneLine(logging.Formatter):
    """A record on one line: its exception as ``(Type: message)``, not a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        plain = logging.makeLogRecord(
            {**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None}
        )
        text = super().format(plain)
        if exc is not None:
            text += f" ({type(exc).__name__}: {exc})"
        return " ".join(text.split())


def _unwrap_help(command: Any) -> None:
    """Make each prose paragraph of the help of ``command`` and its subcommands one
    line, for rich to wrap to the terminal: typer's rich help keeps a docstring's line
    breaks within a paragraph, so at any width but the source's the text was ragged,
    and a command's summary in ``brokerkit --help`` broke mid-sentence.

    What click means to be shown otherwise stays so: the text after ``\\f`` is left
    out (it is not for ``--help``), and a paragraph that starts with ``\\b`` (click's
    "keep as it is"), or has an indented line or a list item (``-``, ``*``, ``1.``: a
    plugin command's example or steps), keeps its lines.

    A docstring written for Sphinx shows plain, in the command's help and its
    options' (a literal as its text, a role as its target: see :func:`_plain`)."""
    help_text = getattr(command, "help", None)
    if isinstance(help_text, str):
        paragraphs = inspect.cleandoc(_plain(help_text)).partition("\f")[0].split("\n\n")
        command.help = "\n\n".join(
            p if _laid_out(p) else " ".join(p.split()) for p in paragraphs
        ).strip()
    for param in getattr(command, "params", []):
        if isinstance(getattr(param, "help", None), str):
            param.help = _plain(param.help)
    for sub in getattr(command, "commands", {}).values():
        _unwrap_help(sub)


#: A Sphinx role (class, func...) and its target, after a ``~`` or not.
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`]+)`")
#: A reStructuredText literal (text between two double backticks).
_LITERAL = re.compile(r"``([^`]+)``")


def _plain(text: str) -> str:
    """``text`` without reStructuredText's marks, as a terminal shows it: a literal's
    text, a role's target (its last name, after ``~``)."""
    text = _ROLE.sub(lambda m: m[2].rsplit(".", 1)[-1] if m[1] else m[2], text)
    return _LITERAL.sub(r"\1", text)


#: A line that is part of a layout, not of wrapped prose: indented, or a list item.
_LAID_OUT_LINE = re.compile(r"[ \t]+\S|[-*+\u2022][ \t]|\d+[.)][ \t]")


def _laid_out(paragraph: str) -> bool:
    """Whether a paragraph keeps its line breaks: click's ``\\b``, or a layout."""
    return paragraph.startswith("\b") or any(
        _LAID_OUT_LINE.match(line) for line in paragraph.split("\n")
    )


def _usage_message(exc: Exception) -> str:
    """A usage error as one line that says where to read more."""
    message = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
    if not isinstance(exc, _UsageError):
        return message
    context: Any = getattr(exc, "ctx", None)
    path = context.command_path if context is not None else "brokerkit"
    if "'URL'" in message and message.startswith("Missing argument"):
        empty = URL_ENV in os.environ and not os.environ[URL_ENV].strip()
        message += f" Give it, or set {URL_ENV}{', which is set but empty' * empty}."
    return f"{message} (see '{path} -h')"


def _fail(message: str, argv: list[str]) -> None:
    # A driver's or a server's words may hold control characters: shown, not obeyed
    # (the line breaks of a usage message stay).
    lines = redact(message, argv).split("\n")
    sys.stderr.write(f"brokerkit: error: {chr(10).join(map(visible, lines))}\n")
    sys.stderr.flush()
