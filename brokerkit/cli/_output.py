"""Where the command writes: data to stdout, chatter and errors to stderr (the
secrets of its URLs masked), and text made safe to show there. How values and
deliveries are printed as data (JSON, a delivery's line) is
:mod:`brokerkit.cli._data_output`'s."""

from __future__ import annotations

import functools
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from brokerkit._secret_options import SHORT_VALUE, is_secret, secret_in
from brokerkit._url import BrokerURL, unparsed_secrets
from brokerkit.exceptions import InvalidURL

__all__ = [
    "cell",
    "encoding_of",
    "err",
    "fits",
    "for_terminal",
    "hide_secrets_of",
    "out",
    "progress_bar",
    "redact",
    "remembering",
    "visible",
    "writable",
]

#: The arguments of the command running (its URL, from the command line or
#: ``BROKERKIT_URL``) whose secrets :data:`err` masks (see :func:`hide_secrets_of`).
#: Not a context variable: a command's own threads (the exporter's) print too.
_HIDDEN: list[str] = []
_HIDDEN_LOCK = threading.Lock()
#: The lists :func:`remembering` fills (the arguments whose secrets an error line of
#: :func:`~brokerkit.cli._app.run` masks, after the command has forgotten them).
_REMEMBERING: list[list[str]] = []


def hide_secrets_of(arguments: Iterable[str]) -> Callable[[], None]:
    """From now on, until the function returned is called, every line :data:`err`
    writes has the secrets of the URLs among ``arguments`` masked (see :func:`redact`):
    a note that quotes a driver's error (``cannot reach ... yet (...)``), as
    ``brokerkit: error: ...`` lines are."""
    added = list(arguments)
    with _HIDDEN_LOCK:
        _HIDDEN.extend(added)
        for remembered in _REMEMBERING:
            remembered.extend(added)

    def forget() -> None:
        with _HIDDEN_LOCK:
            for argument in added:
                _HIDDEN.remove(argument)

    return forget


@contextmanager
def remembering(arguments: list[str]) -> Iterator[list[str]]:
    """While in it, every argument given to :func:`hide_secrets_of` is added to
    ``arguments`` too, and stays there after it is forgotten: the error line that ends
    a command masks the secrets the command hid (the URL of the broker a worker's
    module made) though the command has ended."""
    with _HIDDEN_LOCK:
        _REMEMBERING.append(arguments)
    try:
        yield arguments
    finally:
        with _HIDDEN_LOCK:
            _REMEMBERING.remove(arguments)


class _MaskedStderr:
    """``sys.stderr`` (as it is at each write), every write masked as :func:`redact`
    masks it for the arguments of :func:`hide_secrets_of`. rich writes a line whole.

    While a progress bar of :data:`err` is shown, rich puts in ``sys.stderr`` a proxy
    that prints what is written to it on :data:`err`: the file behind it is written
    to, not the proxy (which would hand the line back to :data:`err`, for ever)."""

    def write(self, text: str) -> int:
        with _HIDDEN_LOCK:
            hidden = list(_HIDDEN)
        if hidden:
            text = redact(text, hidden)
            if "\x1b" in text:
                # a colour code inside a secret (a style of the caller's markup) hides
                # it from the masking: such a line is written without its codes
                plain = _CSI.sub("", text)
                bare = redact(plain, hidden)
                if bare != plain:
                    text = bare
        return _stderr().write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(_stderr(), name)


def _stderr() -> TextIO:
    stream = sys.stderr
    return getattr(stream, "rich_proxied_file", stream)


#: A terminal's control sequence (a colour code, a cursor move).
_CSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

#: Data: message bodies, ids, tables, JSON.
out = Console(soft_wrap=True)
#: Progress, notes and errors, so that stdout stays data; secrets masked. Not
#: highlighted: on a terminal rich would colour the numbers, addresses and ``://`` of a
#: line, its codes splitting a URL or a password (``hunter-42``) that the masking of
#: what is written then no longer finds.
err = Console(file=_MaskedStderr(), soft_wrap=True, highlight=False)  # type: ignore[arg-type]


def progress_bar(description: str = "{task.description}") -> Progress:
    """A progress bar on stderr (description, bar, done/total, time), gone when done."""
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def redact(text: str, arguments: Iterable[str]) -> str:
    """``text`` with every secret of every URL among ``arguments`` masked: the
    password, the value of each query option the URL itself masks
    (``sentinel_password=``, ``token=``...; see :class:`~brokerkit._url.BrokerURL`),
    and all that follows the first of them in the query (which may be the end of
    its value, split at a raw ``&``), as written, decoded or percent-encoded.

    An argument is read as a URL whole, or else, in the ``--option=URL`` form, from
    the first ``=`` on. brokerkit's own errors never show a password; this guards
    what a driver or a plugin might say. A URL quoted whole is shown masked, as
    ``str()`` of the URL shows it, and stays whole: a secret that is a common word
    (a password ``redis``, ``127``) is masked everywhere else in ``text``, but not in
    the masked URL's scheme, host or path (``redis+stream://:***@127.0.0.1/0``).
    """
    wholes, kept, secrets = _masking(tuple(arguments))
    if not secrets:
        return text
    for whole, masked in wholes:
        text = text.replace(whole, masked)
    # The masked URLs are kept whole; the secrets are masked in the text between them.
    pieces = kept.split(text)
    for index in range(0, len(pieces), 2):
        for secret in secrets:
            pieces[index] = pieces[index].replace(secret, _MASK)
    return "".join(pieces)


@functools.lru_cache(maxsize=64)
def _masking(
    arguments: tuple[str, ...],
) -> tuple[tuple[tuple[str, str], ...], re.Pattern[str], tuple[str, ...]]:
    """What :func:`redact` does for ``arguments``, worked out once for each set of them
    (every line written on stderr is masked; parsing the URLs again for each cost about
    0.1 ms a line): each URL as quoted whole, and its masked rendering, in the order
    they are replaced; the pattern that splits a text at the masked URLs (kept whole);
    and every form of every secret, the longest first."""
    wholes: list[tuple[str, str]] = []
    secrets: set[str] = set()
    masked_urls: set[str] = set()
    for argument in arguments:
        found = _url_of(argument)
        if found is None:
            continue
        written, url = found
        if url is None:
            # refused (a raw "+" in its password, say): masked as the URL's error would
            masked, values = unparsed_secrets(written)
            forms, whole_forms = _forms(values), {written}
        else:
            forms, masked = _secrets(url, written), str(url)
            whole_forms = {written, url.render(hide_password=False)}
        if not forms:
            continue
        for whole in sorted(whole_forms, key=len, reverse=True):
            wholes.append((whole, masked))
        secrets |= forms
        masked_urls.add(masked)
    kept = "|".join(re.escape(m) for m in sorted(masked_urls, key=len, reverse=True))
    ordered = tuple(sorted(secrets, key=lambda secret: (-len(secret), secret)))
    return tuple(wholes), re.compile(f"({kept})"), ordered


_MASK = "***"


def _url_of(argument: str) -> tuple[str, BrokerURL | None] | None:
    """The URL ``argument`` holds, as written and parsed: the whole argument, else what
    follows the ``=`` of ``--option=URL``; ``None`` when it holds none. One that does
    not parse (a raw ``+`` in its password, a mistyped ``://``) is given with ``None``
    for the parsed URL if it starts as a URL, ``://`` mistyped or not
    (``redis+stream:/``, ``redis+stream//``, ``nats:``), holds no whitespace (a message
    body is no URL) and its error would mask something (``m:worker`` masks nothing)."""
    candidates = [argument]
    option, equals, value = argument.partition("=")
    if equals and "://" not in option:
        candidates.append(value)
    for candidate in candidates:
        try:
            return candidate, BrokerURL.parse(candidate)
        except InvalidURL:
            continue
    url = next((c for c in candidates if _masked_as_url(c)), None)
    return None if url is None else (url, None)


def _masked_as_url(text: str) -> bool:
    """Whether ``text``, which does not parse, is masked as a URL is: it starts as one
    whose ``://`` is mistyped (a scheme, then ``:/`` or ``//``; or a scheme brokerkit
    serves, then ``:``: not any ``name:``, as a topic ``svc:v2@eu`` would read as a
    password ``v2``), holds no whitespace, and its error would mask a part."""
    from brokerkit.cli._url import _known_schemes  # the registry, loaded once

    scheme = _SCHEME.match(text)
    if scheme is None or _SPACE.search(text):
        return False
    typo = text.startswith((":/", "//"), scheme.end())
    known = text.startswith(":", scheme.end()) and scheme.group().lower() in _known_schemes()
    return (typo or known) and unparsed_secrets(text)[0] != text


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_SPACE = re.compile(r"\s")


def _secrets(url: BrokerURL, written: str = "") -> set[str]:
    """Every form in which ``url``'s secrets may be quoted: its password (or a user part
    that is a secret: a NATS token), the values of the query options that its masked
    rendering hides, and what follows the first of them in the query (each option's
    value, as ``name=value`` only if it is short, and the secret's value with all or
    part of what follows, which may be the rest of it: ``Tr0ub&e=3x`` reads as
    ``Tr0ub`` and an option ``e=3x``); each as decoded and percent-encoded, and as
    written in ``written``, the URL's text."""
    values = [url.password] if url.password else []
    if url.username and url.username_is_secret:
        values.append(url.username)
    items = list(url.query.items())
    first = next((i for i, (key, _) in enumerate(items) if _hidden(url, key, "x")), None)
    in_path = secret_in(url.path)
    if in_path:
        # a secret in the path (``/token=x``): its value, and the whole query after it
        head = url.path[in_path[1] + 1 :]
        values.append(head)
        items.insert(0, ("", head))
        first = 0
    for index, (key, value) in enumerate(items):
        if _hidden(url, key, value):
            values.append(value)
        elif first is not None and index > first:
            # may be the end of the secret; a short value ("1", "0", "true"...) only as
            # "name=value", as it is in most messages too
            values.append(value if len(value) >= SHORT_VALUE else f"{key}={value}")
        if first is not None and index > first:  # the secret and what may be its end
            after = "&".join(f"{k}={v}" for k, v in items[first + 1 : index + 1])
            values.append(f"{items[first][1]}{'?' if in_path else '&'}{after}")
    values.extend(_written_secrets(written, bool(url.username and url.username_is_secret)))
    return _forms(values)


def _forms(values: Iterable[str]) -> set[str]:
    """Every form in which the secrets ``values`` (decoded or as written) may be quoted:
    as they are, decoded (a ``+`` as a space too, as a query parser reads it: ``ab+cd``
    as ``ab cd``), and each of those percent-encoded (``ab%2Bcd``, ``ab%20cd``) and
    form-encoded (``ab+cd``). A form that is blank is not one: it would mask every
    space."""
    forms = set()
    for value in values:
        for text in {value, unquote(value), unquote_plus(value)}:
            forms.update({text, quote(text, safe=""), quote(text), quote_plus(text)})
    return {form for form in forms if form.strip()}


def _hidden(url: BrokerURL, key: str, value: str) -> bool:
    """Whether the query option ``key=value`` of ``url`` is one its masked rendering
    hides: the URL module knows which options are secret."""
    alone = BrokerURL(scheme=url.scheme, query={key: value})
    return bool(value) and alone.render() != alone.render(hide_password=False)


def _written_secrets(written: str, secret_user: bool = False) -> set[str]:
    """The secrets of the URL text ``written`` as written there (percent-encoded as its
    author chose: ``hunt%65r2``, ``p%2fss``): the password of its user-info (and the
    user part, when ``secret_user``: a NATS token), and the value of the first secret
    option, in the path (``/token=vh%30st``) or the query, with what follows it, whole
    and option by option."""
    rest = written.partition("://")[2]
    head, _, query = rest.partition("#")[0].partition("?")
    slash = head.find("/")
    authority, path = (head, "") if slash == -1 else (head[:slash], head[slash:])
    found = set()
    if "@" in authority:
        user, _, password = authority.rpartition("@")[0].partition(":")
        found.add(password)
        if secret_user:
            found.add(user)
    segments = query.split("&") if query else []
    in_path = _written_secret_in(path)
    if in_path is not None:
        # the value of the path's secret, and the whole query after it, may be one
        value, joiner, following = path[in_path + 1 :], "?", segments
    else:
        first = next(
            (
                i
                for i, s in enumerate(segments)
                if "=" in s and is_secret(unquote_plus(s.split("=")[0]))
            ),
            None,
        )
        if first is None:
            return found
        value, joiner = segments[first].partition("=")[2], "&"
        following = segments[first + 1 :]
    found.add(value)
    for index, segment in enumerate(following):
        name, _, option = segment.partition("=")
        secret = is_secret(unquote_plus(name))
        found.add(option if secret or len(option) >= SHORT_VALUE else segment)
        found.add(value + joiner + "&".join(following[: index + 1]))
    return found


def _written_secret_in(path: str) -> int | None:
    """The index of the ``=`` of the first secret option written in ``path`` as written
    in a URL (its name decoded to tell), as :func:`~brokerkit._secret_options.secret_in` finds it
    in the decoded path; ``None`` when the path holds none."""
    start = 0
    for index, char in enumerate(path):
        if char in "/&?;":
            start = index + 1
        elif char == "=":
            if is_secret(unquote(path[start:index])):
                return index
            start = index + 1
    return None


def encoding_of(stream: Console | TextIO | None) -> str:
    """The encoding ``stream`` (default: stdout) writes in (UTF-8 if it names none)."""
    if isinstance(stream, Console):
        return stream.encoding
    return getattr(stream or sys.stdout, "encoding", None) or "utf-8"


def fits(text: str, encoding: str) -> bool:
    """Whether ``encoding`` can hold every character of ``text``."""
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def writable(text: str, stream: Console | TextIO | None = None) -> str:
    """``text`` as ``stream`` (default: stdout) can take it: every character its
    encoding cannot hold, such as a lone surrogate that a JSON ``\\ud800`` escape
    decodes to, written as a backslash escape (``\\ud800``) instead of failing."""
    encoding = encoding_of(stream)
    if fits(text, encoding):
        return text
    return text.encode(encoding, "backslashreplace").decode(encoding)


#: Every control character (C0, DEL, C1) as the backslash escape Python writes for it.
_CONTROL_ESCAPES = {
    code: {"\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(chr(code), f"\\x{code:02x}")
    for code in (*range(0x20), *range(0x7F, 0xA0))
}


def visible(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1) written as a visible
    backslash escape (``\\x1b``, ``\\n``), so that text from a message or a server
    cannot move the cursor, clear the screen or retitle the window of the terminal
    it is shown on: rich itself removes only BEL, BS, VT, FF and CR."""
    return text.translate(_CONTROL_ESCAPES)


#: On a terminal, what ``consume`` prints: the control characters of :func:`visible`
#: but the line feed and the tab, which lay a body out and command the terminal nothing.
_TERMINAL_ESCAPES = {
    code: escaped for code, escaped in _CONTROL_ESCAPES.items() if chr(code) not in "\n\t"
}
#: In JSON text (whose C0 controls json.dumps already escapes), DEL and C1 as the
#: ``\u00XX`` escape of the same character: the same JSON value.
_JSON_TERMINAL_ESCAPES = {code: f"\\u{code:04x}" for code in range(0x7F, 0xA0)}


def for_terminal(text: str, *, json_text: bool = False) -> str:
    """``text`` (a line ``consume`` prints) safe to show on a terminal: every control
    character but the line feed and the tab written as a visible escape, so that a
    message body cannot clear the screen, move the cursor or retitle the window
    (``\x1b``, ``\x07``, ``\x9b`` shown as such); with ``json_text``, ``text`` is JSON
    and stays valid JSON of the same value (``\u009b``)."""
    return text.translate(_JSON_TERMINAL_ESCAPES if json_text else _TERMINAL_ESCAPES)


def cell(value: Any, stream: Console | None = None) -> str:
    """``value`` as rich markup that shows it as it is, for a human-readable table's
    cell or title, or a note on the terminal: control characters made
    :func:`visible`, what ``stream`` (default: stdout) cannot hold escaped (see
    :func:`writable`), and rich markup (``[bold]``) escaped. Never for ``--json``."""
    return escape(writable(visible(str(value)), stream or out))
