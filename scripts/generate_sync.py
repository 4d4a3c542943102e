"""Generate brokerkit's synchronous modules from their asyncio sources.

Every ``brokerkit/**/<name>_async.py`` is the one hand-written copy of a module that does
I/O; this script writes ``<name>.py`` beside it, the same code without ``async`` and
``await``, with async names mapped to their sync twins (``AsyncBroker`` -> ``Broker``,
``__aenter__`` -> ``__enter__``, ``brokerkit._acompat`` -> ``brokerkit._compat``...).
The few primitives that really differ (task vs thread, event, lock, sleep) live in the
hand-written pair ``brokerkit/_acompat.py`` / ``brokerkit/_compat.py``.

    python scripts/generate_sync.py           # rewrite the generated modules
    python scripts/generate_sync.py --check   # exit 1, with a diff, if any is stale

Edits are made at token positions in the source text, so that comments and layout
survive; ``ruff`` then sorts the imports and formats the result. psycopg 3
(``tools/async_to_sync.py``) and httpcore (``scripts/unasync.py``) work the same way.
"""

from __future__ import annotations

import argparse
import difflib
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "brokerkit"
SUFFIX = "_async.py"

#: Names whose sync twin is not found by the general rules below.
NAMES = {
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "StopAsyncIteration": "StopIteration",
    "aclose": "close",
    "aclosing": "closing",
    "asynccontextmanager": "contextmanager",
    "_acompat": "_compat",
    "aioredis": "redis",
}
#: Whole lines of the source replaced as they are (after stripping the indent).
LINES = {
    "import redis.asyncio as aioredis": "import redis",
}
#: Phrases in strings and comments (docstrings mostly).
PHRASES = [
    (re.compile(r"\basync (def|for|with|iterator|generator|context manager)\b"), r"\1"),
    (re.compile(r"\bawait(ed|s)? "), ""),
    (re.compile(r"\bAsync([A-Z]\w*)"), r"\1"),
    (re.compile(r"\basyncio task\b"), "thread"),
    (re.compile(r"\bcoroutine\b"), "method"),
]
HEADER = (
    "# Generated from {source} by scripts/generate_sync.py: do not edit.\n"
    "# Edit the async source and run `python scripts/generate_sync.py`.\n"
)


def sync_name(name: str) -> str:
    """The sync twin of one identifier."""
    if name in NAMES:
        return NAMES[name]
    if name.startswith("Async") and name[5:6].isupper():
        return name[5:]
    if name.endswith("_async") and len(name) > 6:
        return name[: -len("_async")]
    return name


def _phrase(text: str) -> str:
    for pattern, replacement in PHRASES:
        text = pattern.sub(replacement, text)
    return text


def unasync(source: str) -> str:
    """The sync version of ``source`` (before formatting)."""
    lines = source.splitlines(keepends=True)
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped in LINES:
            indent = line[: len(line) - len(line.lstrip())]
            lines[index] = indent + LINES[stripped] + "\n"
    text = "".join(lines)
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))

    def position(row: int, col: int) -> int:
        return offsets[row - 1] + col

    edits: list[tuple[int, int, str]] = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        start = position(*token.start)
        end = position(*token.end)
        if token.type == tokenize.NAME:
            if token.string in ("async", "await"):
                # Drop the keyword and the blanks after it: `await x` -> `x`.
                while end < len(text) and text[end] == " ":
                    end += 1
                edits.append((start, end, ""))
            else:
                renamed = sync_name(token.string)
                if renamed != token.string:
                    edits.append((start, end, renamed))
        elif token.type in (tokenize.STRING, tokenize.COMMENT):
            changed = _phrase(token.string)
            if changed != token.string:
                edits.append((start, end, changed))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _ruff(args: list[str], text: str, filename: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(filename), "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if result.returncode not in (0, 1) or not result.stdout:
        raise SystemExit(f"ruff {' '.join(args)} failed on {filename}:\n{result.stderr}")
    return result.stdout


def generate(source: Path) -> tuple[Path, str]:
    """The target path of ``source`` and the text it should hold."""
    target = source.with_name(source.name[: -len(SUFFIX)] + ".py")
    relative = source.relative_to(ROOT).as_posix()
    text = HEADER.format(source=relative) + unasync(source.read_text())
    text = _ruff(["check", "--fix", "--select", "I,F401", "--quiet", "--exit-zero"], text, target)
    text = _ruff(["format", "--quiet"], text, target)
    return target, text


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob(f"*{SUFFIX}") if "__pycache__" not in p.parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    stale = 0
    for source in sources():
        target, text = generate(source)
        current = target.read_text() if target.exists() else ""
        if current == text:
            continue
        if args.check:
            stale += 1
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    f"{target.relative_to(ROOT)} (committed)",
                    f"{target.relative_to(ROOT)} (generated)",
                )
            )
        else:
            target.write_text(text)
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print(f"\n{stale} generated module(s) are stale: run python scripts/generate_sync.py")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
