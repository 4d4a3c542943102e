"""brokerkit's topic globs rewritten as Redis channel globs, meaning the same.

brokerkit's globs are :func:`fnmatch.fnmatchcase`'s (see :mod:`brokerkit._topics`);
Redis's ``PSUBSCRIBE`` reads another dialect, which only looks alike:

=====================  =====================================  ===========================
glob                   fnmatch (brokerkit)                    Redis, if passed unchanged
=====================  =====================================  ===========================
``[!a]``               any character but ``a``                ``!`` or ``a``
``[.-]``               ``.`` or ``-`` (``-`` last: literal)   a range from ``.`` to ``]``
``[z-a]``              nothing (a reversed range is empty)    ``a`` to ``z`` (swapped)
``[!]`` or ``a[b``     a literal ``[`` (no closing ``]``)     a set running to the end
=====================  =====================================  ===========================

:func:`redis_glob` parses a glob once, by fnmatch's rules, and writes the same set of
strings in Redis's syntax: ``*`` and ``?`` as they are, a set as ``[...]`` or
``[^...]`` with every character in it escaped but the ends of its ranges, and every
other character escaped where Redis would read it as syntax. A set that can match nothing
becomes ``[]``, which Redis also matches with nothing.

Redis matches bytes, fnmatch characters: the two agree on every valid topic (ASCII)
and differ only on channels outside brokerkit's topic syntax that hold non-ASCII text.
"""

from __future__ import annotations

__all__ = ["redis_glob", "redis_literal"]

#: What Redis reads as glob syntax outside a set.
_SPECIAL = frozenset("*?[]\\")
#: What Redis cannot take unescaped as the first end of a range in a set: ``\`` (an
#: escape), ``]`` (the end of the set) and ``^`` (a negation, first in the set).
_NOT_A_RANGE_START = frozenset("\\]^")


def redis_literal(text: str) -> str:
    """``text`` as a Redis glob that matches exactly ``text``."""
    return "".join(f"\\{c}" if c in _SPECIAL else c for c in text)


def redis_glob(glob: str) -> str:
    """The Redis glob that matches exactly the strings :func:`fnmatch.fnmatchcase`
    matches with ``glob``.

    fnmatch's rules: ``*`` is any run of characters, ``?`` one character; ``[...]``
    one character of a set and ``[!...]`` one not in it, where a ``]`` first in the
    set and a ``-`` first or last are literal, ``a-c`` is a range and a reversed range
    (``c-a``) is empty; a ``[`` with no ``]`` after it is a literal ``[``.
    """
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c in "*?":
            out.append(c)
        elif c == "[" and (end := _set_end(glob, i)) is not None:
            out.append(_redis_set(glob[i:end]))
            i = end + 1
        else:
            out.append(redis_literal(c))
    return "".join(out)


def _set_end(glob: str, start: int) -> int | None:
    """Where the ``]`` closing the set whose contents begin at ``start`` is, or None
    if there is none (the ``[`` is then a literal), as fnmatch finds it."""
    j, n = start, len(glob)
    if j < n and glob[j] == "!":
        j += 1
    if j < n and glob[j] == "]":  # first in the set (after any "!"): a literal "]"
        j += 1
    while j < n and glob[j] != "]":
        j += 1
    return j if j < n else None


def _redis_set(contents: str) -> str:
    """The Redis glob for the fnmatch set ``[contents]``."""
    negated = contents.startswith("!")
    body = contents[1:] if negated else contents
    items: list[str] = []
    p, n = 0, len(body)
    while p < n:
        if p + 2 < n and body[p + 1] == "-":  # a range; a "-" first or last is not one
            low, high = body[p], body[p + 2]
            p += 3
            items.extend(_redis_range(low, high))
        else:
            items.append(_escaped(body[p]))
            p += 1
    if not items:
        # Only reversed ranges: a set of nothing. "[^]" in Redis would match anything.
        return "?" if negated else "[]"
    return f"[{'^' if negated else ''}{''.join(items)}]"


def _redis_range(low: str, high: str) -> list[str]:
    """The items of a Redis set holding the characters ``low`` to ``high``: none for a
    reversed range (Redis would swap its ends), and a range start Redis would read as
    syntax escaped alone."""
    items: list[str] = []
    first, last = ord(low), ord(high)
    while first <= last and chr(first) in _NOT_A_RANGE_START:
        items.append(_escaped(chr(first)))
        first += 1
    if first < last:
        # Redis reads the range's second end raw, whatever it is.
        items.append(f"{chr(first)}-{chr(last)}")
    elif first == last:
        items.append(_escaped(chr(first)))
    return items


def _escaped(c: str) -> str:
    """``c`` as a literal inside a Redis set: escaped even if a letter, as a raw
    character followed by a range starting with ``-`` would make a range of its own."""
    return f"\\{c}"
