"""What ``brokerkit publish`` reads: its BODY, and stdin's lines in batches of what
has come."""

from __future__ import annotations

import json
import os
import re
import select
import sys
from collections.abc import Iterator
from itertools import islice
from typing import Any, TypeVar

import typer

__all__ = ["check_text", "decode", "decoded", "line_batches", "text_argument"]

#: A lone surrogate: what an undecodable byte of stdin or argv is read as.
_SURROGATE = re.compile("[\ud800-\udfff]")

#: The most read from stdin at once.
_READ = 1 << 16

_Value = TypeVar("_Value", str, list[str], None)


def line_batches(size: int) -> Iterator[list[str]]:
    """stdin's lines, each decoded on its own (a byte that does not decode becomes a
    lone surrogate) and without its line feed (a carriage return before it stays), at
    most ``size`` at a time.

    A batch is what has come: once stdin has no more to give without waiting, the
    lines read so far go out as a batch, fewer than ``size`` if so (``tail -f log |``
    publishes each line as it comes); input that is all there (a file, a fast pipe)
    comes in batches of ``size``. A line is taken only once its line break has come,
    or stdin has ended. A text stream put in place of stdin (no file descriptor) is
    read ``size`` lines at a time.
    """
    buffer = getattr(sys.stdin, "buffer", None)
    fd = _fileno(buffer)
    if buffer is None or fd is None or os.name == "nt":
        lines = (line.removesuffix("\n") for line in _stream_lines(buffer))
        while batch := list(islice(lines, size)):
            yield batch
        return
    encoding = sys.stdin.encoding or "utf-8"
    for raw in _fd_batches(fd, size):
        yield [line.decode(encoding, "surrogateescape") for line in raw]


def _fileno(buffer: Any) -> int | None:
    """The file descriptor behind ``buffer``, if it has one (read directly: nothing
    else reads stdin before ``publish``)."""
    try:
        fd = buffer.fileno()
    except (AttributeError, ValueError, OSError):
        return None
    return fd if isinstance(fd, int) and _readable(fd) is not None else None


def _stream_lines(buffer: Any) -> Iterator[str]:
    if buffer is None:  # a text stream put in place of stdin
        yield from sys.stdin
        return
    encoding = sys.stdin.encoding or "utf-8"
    for line in buffer:
        yield line.decode(encoding, "surrogateescape")


def _fd_batches(fd: int, size: int) -> Iterator[list[bytes]]:
    """The lines of ``fd`` (without their line breaks), at most ``size`` at a time, a
    batch as soon as ``fd`` has nothing more to give at once (see :func:`line_batches`).
    A signal's exception raised in a read or a wait ends it (nothing is lost that was
    given out)."""
    lines: list[bytes] = []
    start = 0  # lines[start:] are not given out yet
    partial: list[bytes] = []  # the line under way, its line break still to come
    while True:
        ready = len(lines) - start
        if ready >= size or (ready and not _readable(fd)):
            yield lines[start : start + size]
            start += size
            if start >= len(lines):
                lines, start = [], 0
            continue
        data = os.read(fd, _READ)
        if not data:  # stdin ended: the last line needs no line break
            if partial:
                lines.append(b"".join(partial))
            for first in range(start, len(lines), size):
                yield lines[first : first + size]
            return
        head, newline, tail = data.rpartition(b"\n")
        if not newline:
            partial.append(data)
            continue
        if start:
            lines, start = lines[start:], 0
        lines.extend(b"".join([*partial, head]).split(b"\n"))
        partial = [tail] if tail else []


def _readable(fd: int) -> bool | None:
    """Whether ``fd`` has something to read (or its end) now, without waiting; None
    when that cannot be told of it."""
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return None


def decoded(batches: Iterator[list[str]], as_json: bool) -> Iterator[list[Any]]:
    """The values to publish for each batch of stdin's lines (see :func:`decode`)."""
    number = 0
    for batch in batches:
        values = []
        for line in batch:
            number += 1
            values.append(decode(line.rstrip("\r\n"), as_json, number))
        yield values


def decode(text: str, as_json: bool, line: int | None = None) -> Any:
    """The value to publish for ``text`` (BODY, or stdin's line number ``line``).

    :raises typer.BadParameter: ``text`` is not valid text (it held bytes that do not
        decode), or not JSON with ``as_json``.
    """
    where = "" if line is None else f"line {line} of stdin: "
    _check_text(text, where, stdin=line is not None)
    if not as_json:
        return text
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError as exc:  # JSONDecodeError, or NaN / Infinity refused
        raise typer.BadParameter(
            f"{where}not JSON: {exc}: {text[:60]!r}", param_hint="--json"
        ) from None
    except RecursionError:
        raise typer.BadParameter(
            f"{where}JSON nested too deeply to decode (publish it as text, without --json)",
            param_hint="--json",
        ) from None


def _not_json(name: str) -> Any:
    """Refuse what Python's json module reads beyond JSON: NaN, Infinity, -Infinity."""
    raise ValueError(f"{name} is not a JSON value (quote it to publish the string)")


def _check_text(text: str, where: str, *, stdin: bool) -> None:
    """Refuse ``text`` holding a lone surrogate: a byte of stdin (or of an argument)
    that did not decode, which no message body may carry."""
    check_text(text, "BODY", where, stdin=stdin)


def check_text(text: str, param_hint: str, where: str = "", *, stdin: bool = False) -> None:
    """Refuse ``text``, given as ``param_hint`` (an argument, or stdin with ``stdin``),
    when it holds a lone surrogate: a byte that did not decode (Python reads each such
    byte of argv or stdin as one), which no topic, group, header or body may carry.

    :raises typer.BadParameter: naming ``param_hint`` and the byte (``byte 0xff``).
    """
    bad = _SURROGATE.search(text)
    if bad is None:
        return
    code = ord(bad.group())
    what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
    encoding = getattr(sys.stdin, "encoding", None) if stdin else sys.getfilesystemencoding()
    raise typer.BadParameter(
        f"{where}not valid {encoding or 'Unicode'} text ({what} at character "
        f"{bad.start() + 1}); give text in that encoding",
        param_hint=param_hint,
    )


def text_argument(ctx: typer.Context, param: typer.CallbackParam, value: _Value) -> _Value:
    """A typer callback for an argument or option that names a topic or a group:
    ``value`` (each, for a repeated option) as given, refused by :func:`check_text`
    under the argument's name (``TOPIC``, ``--group``)."""
    if param.param_type_name == "option":
        hint = max(param.opts, key=len)
    else:
        hint = (getattr(param, "metavar", None) or param.name or "argument").upper()
    texts: list[str] = [value] if isinstance(value, str) else list(value or ())
    for text in texts:
        check_text(text, hint)
    return value
