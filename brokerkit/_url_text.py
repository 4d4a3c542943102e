"""The text of a broker URL that did not parse, or that holds a secret: the checks
that refuse such a URL (without quoting the secret) and the masking of its text. No
parsing of a URL into its parts (see :mod:`._url`)."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import unquote, unquote_plus

from brokerkit._secret_options import (
    MASK,
    SECRET_NAMES_TEXT,
    SHORT_VALUE,
    holds_a_secret_option,
    is_secret,
    query_typed_in,
    secret_in,
)
from brokerkit.exceptions import InvalidURL

__all__ = [
    "JUNK_AFTER_BRACKET",
    "MAX_PORT",
    "SCHEME",
    "SCHEME_PREFIX",
    "TOKEN_USER_FAMILIES",
    "bad_host",
    "check_query_secrets",
    "check_userinfo",
    "is_ipv6_address",
    "mask_port",
    "masked",
    "port_masked",
    "split_note",
    "unparsed_secrets",
]

#: The scheme families (the part before ``+``) whose user part, without a password,
#: is a secret: NATS's token form, ``nats://TOKEN@host``.
TOKEN_USER_FAMILIES = frozenset({"nats"})


def check_userinfo(url: str) -> None:
    """Refuse user-info that parses in more than one way, or that a parser would split
    into host, port, path or query (where the secret would then be shown).

    A user name or password must percent-encode ``/ ? # @`` (they would end it or
    start another part), and ``+ =`` (form decoders read ``+`` as a space, and
    ``=`` is how an option value looks). An "@" after the first ``/ ? #`` is taken
    for part of an option's value (``?client_name=me@host``) only after a host
    list: after ``user:`` or ``user:pw`` it ends user-info that a raw ``/ ? #`` cut
    short (``app:?pw=x@host``), and so it does in a NATS URL, whose user part alone
    is a token (``nats://Tk?x=y@host``; no NATS option's value holds an ``@``). The
    message never quotes the URL.
    """
    scheme, _, rest = url.partition("://")
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    ambiguous = authority.count("@") > 1 or any(_at_outside_an_option(tail, i) for i in _ats(tail))
    if not ambiguous and "@" in authority:
        userinfo = authority.rpartition("@")[0]
        ambiguous = any(c in userinfo for c in _ENCODE_IN_USERINFO)
    elif not ambiguous and "@" in tail:
        # "app:?pw=x@host": the "@" is in an option's value only if what comes before
        # the first / ? # is a host list; "user:" or "user:pw" is user-info cut short.
        # In a NATS URL "Tk?x=y@host" is a token cut short (no NATS option holds "@").
        ambiguous = _token_user(f"{scheme}:") or (
            ":" in authority and _HOST_LIST.fullmatch(authority) is None
        )
    if ambiguous:
        raise InvalidURL(
            f"a {scheme}:// URL whose user name or password holds / ? # @ + or = must "
            "percent-encode them (%2F %3F %23 %40 %2B %3D) with "
            "urllib.parse.quote(password, safe=''); the URL is not shown, as it may "
            "contain the password"
        )


def check_query_secrets(url: str) -> None:
    """Refuse a secret query value (``sentinel_password=``, ``token=``...) that a query
    parser would read otherwise than written: a raw ``+`` (a space to the parser), a
    ``#`` after it (the parser would cut the value there), an ``&`` after it followed
    by what is not an option (the parser would split the value, and show its tail as
    an unknown option). Refuse too a secret option written where no option is read,
    which would be kept (and shown) as part of something else: in the host
    (``nats://token=pw``, a ``?`` left out), in another option's value
    (``?sentinel=m?sentinel_password=pw``) or in the fragment (``#token=pw``),
    that is, a secret name (see :func:`~brokerkit._secret_options.is_secret`) followed by a raw
    ``=``; and one in the path after a raw ``&`` or ``;`` in its segment
    (``/0&token=pw``: a ``?`` typed as ``&``), which the backend would be sent (an AMQP
    vhost, echoed by RabbitMQ). (A whole path segment ``token=x`` is taken: an AMQP
    vhost may be so named; the path is then shown up to its ``=``, see
    :meth:`BrokerURL.render`.) The message names the
    option, never the URL, nor an option that follows a secret (it may be the end of
    that secret's value).
    """
    scheme, _, rest = url.partition("://")
    before_fragment, fragment_mark, fragment = url.partition("#")
    query_mark, query = before_fragment.partition("?")[1:]
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    hosts = rest[:authority_end].rpartition("@")[2]
    if holds_a_secret_option(hosts):
        raise InvalidURL(_misplaced_secret(scheme, "the host", "a '?' or '/?' left out before it"))
    raw_path = rest[authority_end:].partition("?")[0].partition("#")[0]
    if query_typed_in(raw_path):
        raise InvalidURL(_misplaced_secret(scheme, "the path", "an '&' (or ';') typed for '?'"))
    in_path = secret_in(unquote(raw_path))
    segments = query.split("&") if query_mark else []
    # the last secret option before: what follows it may be its end
    previous = in_path[0] if in_path else ""
    for index, segment in enumerate(segments):
        raw_key, equals, value = segment.partition("=")
        key = unquote_plus(raw_key)
        named = f"an option that follows {previous!r}" if previous else f"{key!r}"
        if not equals or not is_secret(key):
            if equals and holds_a_secret_option(value):
                raise InvalidURL(
                    _misplaced_secret(scheme, f"the value of {named}", "a '?' typed for '&'")
                )
            continue
        following = segments[index + 1] if index + 1 < len(segments) else None
        previous = key
        if "+" in value:
            problem = "a raw '+', which a query parser reads as a space"
        elif following is None and fragment_mark:
            problem = "a raw '#', where a URL parser would cut it short"
        elif following is not None and not _OPTION.fullmatch(following):
            problem = "a raw '&', where a query parser would split it in two"
        else:
            continue
        raise InvalidURL(
            f"the value of {named} in a {scheme}:// URL holds {problem}; "
            "percent-encode the value (+ %2B, & %26, # %23) with "
            "urllib.parse.quote(value, safe=''); the URL is not shown, as it holds the secret"
        )
    if holds_a_secret_option(fragment):
        raise InvalidURL(_misplaced_secret(scheme, "the fragment", "a '#' typed for '&'"))


def _misplaced_secret(scheme: str, where: str, typo: str) -> str:
    return (
        f"{where} in a {scheme}:// URL holds what looks like a secret option "
        f"({SECRET_NAMES_TEXT}, then '='): {typo}? It would be read as "
        "part of it, and shown. Write options as ?name=value&name=value, or "
        "percent-encode a '=' that belongs there as %3D; the URL is not shown, as it "
        "may hold the secret"
    )


def split_note(secret: str) -> str:
    """Why what follows the secret option ``secret`` is not shown, and what to do."""
    return (
        f"it may be the end of {secret}'s value, split at a raw '&': percent-encode "
        "'&' in the value as %26"
    )


def bad_host(url: str) -> InvalidURL:
    """The error for ``url``, whose first host and port do not parse: what is wrong
    with them (an IPv6 address's brackets, a port out of range or not a number), the URL
    quoted with its secrets masked (:func:`masked`), and what stands where a port goes
    masked too unless it is a number (:func:`port_masked`)."""
    shown = masked(port_masked(url))
    scheme, _, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    authority = rest[:end]
    hostport = authority.rpartition("@")[2].partition(",")[0]
    if any(
        mark in unicodedata.normalize("NFKC", character)
        for character in authority
        if not character.isascii()
        for mark in "/?#@:"
    ):
        return InvalidURL(
            f"{shown!r} is not a valid URL: its user name, password or host holds a "
            "character that Unicode normalization (NFKC) reads as / ? # @ or :; "
            "percent-encode a user name or password with urllib.parse.quote(value, safe='')"
        )
    if (hostport.count("[") != 1 and "[" in hostport) or ("[" in hostport) != ("]" in hostport):
        return InvalidURL(
            f"{shown!r} is not a valid URL: its host opens an IPv6 address with '[' and "
            f"does not close it with ']' (or the reverse); write it as {scheme}://[::1]:6379"
        )
    if hostport.startswith("["):
        after = hostport.partition("]")[2]
        if after and not after.startswith(":"):
            return InvalidURL(
                f"{shown!r} is not a valid URL: {after[:20]!r} follows its IPv6 address's "
                f"']', where only ':' and a port may; write it as {scheme}://[::1]:6379"
            )
        port = after.removeprefix(":")
    elif hostport.count(":") > 1 and _IPV6.fullmatch(hostport):
        text = unquote(hostport)  # fe80::1%25eth0: its zone written as a URL writes it
        head, _, port = text.rpartition(":")
        whole = f"{scheme}://[{text.replace('%', '%25')}]"
        example = f"{scheme}://[{head.replace('%', '%25')}]:{port}"
        if not (port.isascii() and port.isdigit() and is_ipv6_address(head)):
            example = whole  # fe80::1 is an address whole: its last group is no port
        elif is_ipv6_address(text) and "%" not in text:  # a zone holds no ':'
            example = f"{example} (or {whole} if all of it is the address)"
        return InvalidURL(
            f"{shown!r} is not a valid URL: an IPv6 address is written in brackets, "
            f"then the port: {example}"
        )
    else:
        port = hostport.partition(":")[2]
    if port.isascii() and port.isdigit():
        number = f"port {port}" if len(port) <= 20 else f"a port of {len(port):,} digits"
        return InvalidURL(
            f"{masked(port_masked(url, long_digits=True))!r} names {number}: a port "
            f"is a number from 1 to {MAX_PORT} (leave it out for the backend's default)"
        )
    return InvalidURL(
        f"{shown!r} is not a valid URL: what follows the host and ':' is not a port number "
        "(it is not shown: it may be a password whose '@host' was left out); the port "
        f"must be a number from 1 to {MAX_PORT}, and "
        "/ ? # @ + = : in a user name or password must be percent-encoded "
        "(%2F %3F %23 %40 %2B %3D %3A)"
    )


def port_masked(url: str, *, long_digits: bool = False) -> str:
    """``url`` with what stands where a port goes in its host list masked
    (:func:`mask_port`), for an error to quote it: ``user:s3cret/0``, a URL whose
    ``@host`` was left out, would show the password as a port. With ``long_digits``,
    a port of more than 20 digits is shown by its length."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    userinfo, at, hostlist = rest[:end].rpartition("@")
    hosts = ",".join(mask_port(host, long_digits=long_digits) for host in hostlist.split(","))
    return f"{scheme}://{userinfo}{at}{hosts}{rest[end:]}"


def mask_port(hostport: str, *, long_digits: bool = False) -> str:
    """``host:port`` as an error may quote it: the port masked unless it is a number
    (an IPv6 address, bracketed or not, kept)."""
    if hostport.startswith("["):
        address, bracket, after = hostport.partition("]")
        if not bracket or not after.startswith(":"):
            return hostport
        head, port = address + bracket, after[1:]
    else:
        if _IPV6.fullmatch(hostport) and hostport.count(":") > 1:
            return hostport
        head, _, port = hostport.partition(":")
        if not _:
            return hostport
    if port.isascii() and port.isdigit():
        if long_digits and len(port) > 20:
            return f"{head}:<{len(port):,} digits>"
        return hostport
    return f"{head}:{MASK}"


#: A bracketed host followed by anything but a port: ``[::1]x``.
JUNK_AFTER_BRACKET = re.compile(r"\][^:]|\]:.*[^0-9]")
#: What an IPv6 address (with a zone, a port after it) may be made of.
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.~-]+)?(?::[0-9]*)?")


def is_ipv6_address(text: str) -> bool:
    """Whether ``text`` is an IPv6 address (with a ``%zone`` or not)."""
    try:
        ipaddress.IPv6Address(text.partition("%")[0])
    except ValueError:
        return False
    return True


#: Characters that must be percent-encoded in a user name or password.
_ENCODE_IN_USERINFO = "/?#@+="
MAX_PORT = 65535
#: One host or a comma-separated list of them, each with a numeric port or none:
#: ``h``, ``h:6379``, ``[::1]:6379``, ``h1:7000,h2:7001``.
_HOST = r"(?:\[[^\[\]@]*\]|[^\[\]:,@]+)(?::[0-9]+)?"
_HOST_LIST = re.compile(rf"{_HOST}(?:,{_HOST})*")
#: ``name=value`` as every option is written: what may follow a secret query value.
_OPTION = re.compile(r"[a-z_][a-z0-9_]*=.*", re.S)


def _ats(text: str) -> list[int]:
    return [i for i, c in enumerate(text) if c == "@"]


def _at_outside_an_option(tail: str, at: int) -> bool:
    """Whether the "@" at ``at`` in the text after the host is anywhere but inside an
    option's value (``?client_name=me@host``): in the path, the fragment, or a query
    segment without ``=`` before it, it can only be part of a user name or password."""
    query = tail.find("?")
    fragment = tail.find("#")
    if query == -1 or at < query or (fragment != -1 and fragment < at):
        return True
    segment_start = max(tail.rfind("&", 0, at), query)
    return "=" not in tail[segment_start:at]


#: A scheme followed by a colon and any number of slashes: ``redis+stream:/``,
#: ``user:`` (where a scheme-less ``user:pw@host`` would put it).
SCHEME_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/*")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def masked(url: str) -> str:
    """``url`` with whatever could be a password replaced by ``***``, even when the URL
    does not parse: a missing or mistyped ``://`` (``redis+stream:/u:pw@host``,
    ``u:pw@host``), an unencoded ``@`` or ``/`` in the password. Everything up to the
    last ``@`` but the user name is masked; and everything after the ``=`` of the first
    option that names a secret (its value, and all that follows it, which may be the
    end of the value split at a raw ``&``), shown as one ``***``. Should the last
    ``@`` come after that ``=``, all of it but the scheme (and a user name) is masked.

    Without ``//``, the text before the first colon may be a scheme or a user name
    (``app:pass:word@host``): only it is kept, and the rest up to the last ``@`` masked.
    """
    prefix, rest, secret = _secret_parts(url)
    shown, hidden = (rest[: secret.end()], MASK) if secret else (rest, "")
    at = rest.rfind("@")
    if at != -1:
        if at < len(shown):
            userinfo, at_sign, hostpart = rest[:at], "@", shown[at + 1 :]
        else:
            # The last "@" is in the secret's value or after it: all of it is masked.
            userinfo, at_sign, hostpart, hidden = rest, "", "", ""
        if not prefix or prefix.endswith("//"):
            user = userinfo.split(":", 1)[0]
        else:
            user, prefix = "", prefix.rstrip("/")
        if any(c in user for c in "/?#@") or (":" not in userinfo and _token_user(prefix)):
            user = ""
        masked = f"{user}:{MASK}" if user else MASK
        shown = f"{masked}{at_sign}{hostpart}"
    return prefix + shown + hidden


def unparsed_secrets(url: str) -> tuple[str, list[str]]:
    """For the text of a URL that may not parse (a raw ``+`` in its password, refused):
    the text as an error would quote it (every secret masked, see :func:`masked`), and
    what that hides, as written: the password (or a user part that may be a token) and,
    from the value of the first secret option on, that value with all that follows it,
    whole and split at each ``&`` (each following value alone where it is not short,
    else as ``name=value``; and the value joined with what follows, up to each)."""
    shown = masked(url)
    _, rest, secret = _secret_parts(url)
    hidden: list[str] = []
    at = rest.rfind("@")
    if at != -1:
        userinfo = rest[:at]
        user, _, password = userinfo.partition(":")
        # the user name is shown (``user:***@``) unless it may be a secret itself
        kept = not user or f"{user}:{MASK}" in shown
        hidden.extend([password] if kept else [userinfo, password])
    if secret is not None:
        value, *following = rest[secret.end() :].split("&")
        hidden.append(value)
        for index, segment in enumerate(following):
            option = segment.partition("=")[2]
            hidden.append(option if len(option) >= SHORT_VALUE else segment)
            hidden.append("&".join([value, *following[: index + 1]]))
    return shown, [text for text in hidden if text.strip()]


def _secret_parts(url: str) -> tuple[str, str, re.Match[str] | None]:
    """``url`` split as :func:`masked` reads it: the scheme and what follows it
    (``redis+stream:/``, a mistyped ``://`` too), the rest, and the name and ``=`` of
    the first option in the rest that names a secret (``None`` if none does)."""
    match = SCHEME_PREFIX.match(url)
    prefix = match.group() if match else ""
    rest = url[len(prefix) :]
    names = _QUERY_NAME.finditer(rest)
    return prefix, rest, next((m for m in names if is_secret(unquote_plus(m.group(1)))), None)


def _token_user(prefix: str) -> bool:
    """Whether a user part without a password, after the scheme ``prefix`` of a URL
    that does not parse, may be a token: in a NATS URL, and where there is no scheme
    to tell (``TOKEN@host:4222``)."""
    scheme = prefix.partition(":")[0].lower()
    return not scheme or scheme.split("+", 1)[0] in TOKEN_USER_FAMILIES


#: An option's name and its ``=``, anywhere an option may be written (or mistyped): at
#: the start, or after ``? & #`` or another ``=`` (``?sentinel=msentinel_password=pw``).
_QUERY_NAME = re.compile(r"(?:^|(?<=[?&#=]))([^=?&#]*)=")
