"""The Python blocks of the docs run, as a reader would paste them.

On every page of ``PAGES`` a block that starts with its imports and imports brokerkit
runs as it is. On the pages of ``CHECKED`` every Python block runs, or says in the
page's source, on the line right before it, why and how not:

- ``<!-- docs-test: skip REASON -->``: a sketch that cannot run (it names the
  application's own functions, or waits for ever); the test lists it as skipped;
- ``<!-- docs-test: setup`` + lines of code + ``-->``: a fragment that runs after
  that code (the ``broker`` the page's text speaks of, say);
- ``<!-- docs-test: await-setup`` ...: the same for a fragment that uses ``await`` at
  the top level, as in ``python -m asyncio``.

A block without one that is not self-contained fails the test, so that no block is
left out in silence. Server URLs run against servers of the test's own: Redis
(``localhost:6379``) against a private redis-server, emptied after each block; NATS
(``localhost:4222``) against the test run's NATS server, and RabbitMQ
(``localhost:5672``) against the one the kombu tests use (skipped, saying so, when it is
not reachable), under a prefix of the test's own that is deleted afterwards.
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from tests.kombu_rabbitmq import amqp_url, delete_names, rabbitmq
from tests.nats_server import delete_stream
from tests.redis_server import RedisServer

__all__ = ["rabbitmq"]  # a fixture

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
_DIRECTED_BLOCK = re.compile(
    r"(?:<!-- docs-test: (?P<kind>skip|setup|await-setup)(?P<arg>.*?)-->\n)?"
    r"```python\n(?P<code>.*?)```(?:\n\n```text\n(?P<shown>.*?)```)?",
    re.DOTALL,
)
# Pages whose outputs vary from run to run (ids, timings): the series test checks them.
_OUTPUT_VARIES = {"docs/observability.md"}
_IMPORTS_BROKERKIT = re.compile(r"^(import brokerkit|from brokerkit[. ])", re.MULTILINE)


def _self_contained(block: str) -> bool:
    return bool(block.startswith(("import ", "from ")) and _IMPORTS_BROKERKIT.search(block))


def _self_contained_blocks(*paths: str) -> list[tuple[str, str]]:
    """Python blocks that import brokerkit themselves (among the imports they start
    with) and need no server."""
    found = []
    for path in paths:
        text = (ROOT / path).read_text()
        for number, block in enumerate(_BLOCK.findall(text), 1):
            if _self_contained(block) and "://localhost:" not in block:
                found.append((f"{path}#{number}", block))
    return found


PAGES = (
    "README.md",
    "docs/quickstart.md",
    "docs/asyncio.md",
    "docs/delays.md",
    "docs/observability.md",
    "docs/workers.md",
)
BLOCKS = _self_contained_blocks(*PAGES)


def test_the_readme_and_quickstart_have_runnable_blocks() -> None:
    assert {name.split("#")[0] for name, _ in BLOCKS} == set(PAGES)


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_block_runs(name: str, code: str) -> None:
    namespace: dict[str, object] = {"__name__": name}
    exec(compile(code, name, "exec", dont_inherit=True), namespace)  # as pasted: no __future__
    for key, value in list(namespace.items()):
        if key.startswith("test_") and callable(value):
            value()  # a block that shows a test runs it


def test_package_docstring_example() -> None:
    failures, tried = doctest.testmod(brokerkit, verbose=False)
    assert tried > 0
    assert failures == 0


_BLOCK_AND_OUTPUT = re.compile(r"```python\n(.*?)```\n\n```text\n(.*?)```", re.DOTALL)


def _metric_examples() -> list[tuple[str, str, str]]:
    """(name, code, the output shown) of each runnable block whose output, shown right
    after it, is Prometheus series."""
    found = []
    for path in PAGES:
        text = (ROOT / path).read_text()
        for number, (code, shown) in enumerate(_BLOCK_AND_OUTPUT.findall(text), 1):
            if (path, code) in {(n.split("#")[0], c) for n, c in BLOCKS} and shown.startswith(
                "brokerkit_"
            ):
                found.append((f"{path}#metrics{number}", code, shown))
    return found


METRIC_EXAMPLES = _metric_examples()


def test_the_observability_page_shows_its_metrics_output() -> None:
    assert [name.split("#")[0] for name, _, _ in METRIC_EXAMPLES] == ["docs/observability.md"]


@pytest.mark.parametrize(
    ("name", "code", "shown"), METRIC_EXAMPLES, ids=[n for n, _, _ in METRIC_EXAMPLES]
)
def test_a_metrics_example_prints_the_series_it_shows(
    name: str, code: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The series (name and labels; values vary) the page shows are those it prints."""
    exec(compile(code, name, "exec", dont_inherit=True), {"__name__": name})
    printed = capsys.readouterr().out

    def series(output: str) -> list[str]:
        return [line.rsplit(" ", 1)[0] for line in output.splitlines() if line]

    assert series(printed) == series(shown)


# Every Python block of these pages runs, or says why not.
CHECKED = (
    "README.md",
    "docs/quickstart.md",
    "docs/patterns.md",
    "docs/concepts.md",
    "docs/demo.md",
    "docs/delays.md",
    "docs/asyncio.md",
    "docs/workers.md",
    "docs/observability.md",
    "docs/backends/memory.md",
    "docs/backends/redis-list.md",
    "docs/backends/redis-stream.md",
    "docs/backends/nats.md",
    "docs/backends/kombu.md",
)


@dataclass(frozen=True)
class DocBlock:
    name: str
    code: str
    kind: str  # "run", "setup", "await-setup", "skip" or "unmarked"
    setup: str = ""
    shown: str | None = None  # the output the page shows right after it

    @property
    def servers(self) -> set[str]:
        text = self.setup + self.code
        return {
            server
            for server, port in (("redis", "6379"), ("nats", "4222"), ("rabbitmq", "5672"))
            if f"localhost:{port}" in text
        }


def _checked_blocks() -> list[DocBlock]:
    found = []
    for path in CHECKED:
        text = (ROOT / path).read_text()
        for number, match in enumerate(_DIRECTED_BLOCK.finditer(text), 1):
            name, code, kind = f"{path}#{number}", match["code"], match["kind"]
            shown = None if path in _OUTPUT_VARIES else match["shown"]
            if kind in ("setup", "await-setup"):
                found.append(DocBlock(name, code, kind, match["arg"].strip("\n"), shown))
            elif kind == "skip":
                found.append(DocBlock(name, code, kind, match["arg"].strip()))
            elif _self_contained(code):
                found.append(DocBlock(name, code, "run", shown=shown))
            else:
                found.append(DocBlock(name, code, "unmarked"))
    return found


DOC_BLOCKS = _checked_blocks()


def test_every_block_runs_or_says_why_not() -> None:
    """A block that is neither self-contained nor marked would be left out in silence."""
    unmarked = [block.name for block in DOC_BLOCKS if block.kind == "unmarked"]
    assert unmarked == [], (
        "mark these blocks <!-- docs-test: setup ... --> or <!-- docs-test: skip REASON -->"
    )
    assert all(block.setup for block in DOC_BLOCKS if block.kind == "skip"), "a skip says why"
    assert {block.name.split("#")[0] for block in DOC_BLOCKS} == set(CHECKED)


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _brokers(namespace: dict[str, Any]) -> list[Any]:
    return [
        value
        for value in namespace.values()
        if isinstance(value, brokerkit.Broker | brokerkit.aio.AsyncBroker)
    ]


async def _run_awaiting(code: Any, namespace: dict[str, Any]) -> None:
    try:
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            await result
    finally:
        for broker in _brokers(namespace):
            await broker.close()


_RAN_ABOVE = {code for _, code in BLOCKS}
# A print whose output the page shows in a comment: the block must print something.
_COMMENTED_PRINT = re.compile(r"^\s*print\(.*\)\s+# ", re.MULTILINE)


@pytest.mark.parametrize(
    "block",
    [b for b in DOC_BLOCKS if b.kind != "unmarked" and not (b.code in _RAN_ABOVE and not b.shown)],
    ids=lambda block: block.name,
)
def test_doc_block_runs(
    block: DocBlock, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    """The block runs; it prints the output the page shows after it, if any, and
    something where a comment shows what a print prints."""
    if block.kind == "skip":
        pytest.skip(f"marked in the page: {block.setup}")
    run = f"dk{uuid.uuid4().hex[:10]}"  # this run's own names on shared servers
    code = block.setup + "\n" + block.code if block.setup else block.code
    redis_server = nats_url = None
    if "redis" in block.servers:
        redis_server = request.getfixturevalue("private_redis")
        code = code.replace("localhost:6379", f"127.0.0.1:{redis_server.port}")
    if "nats" in block.servers:
        nats_url = request.getfixturevalue("nats_url")
        host_port = nats_url.split("://", 1)[1]
        code = re.sub(
            r"nats://localhost:4222(\?prefix=\w+)?", rf"nats://{host_port}?prefix={run}", code
        )
        code = code.replace(f"prefix={run}?", f"prefix={run}&")
    if "rabbitmq" in block.servers:
        request.getfixturevalue("rabbitmq")
        url = amqp_url().rstrip("/")
        code = code.replace("kombu+amqp://guest:guest@localhost:5672/?", f"{url}/?prefix={run}&")
    namespace: dict[str, Any] = {"__name__": block.name}
    try:
        if block.kind == "await-setup":
            flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            compiled = compile(code, block.name, "exec", flags=flags, dont_inherit=True)
            asyncio.run(_run_awaiting(compiled, namespace))
        else:
            try:
                exec(compile(code, block.name, "exec", dont_inherit=True), namespace)
            finally:
                for broker in _brokers(namespace):
                    broker.close()
    finally:
        if redis_server is not None:
            client = redis_server.client()
            client.flushall()
            client.close()
        if nats_url is not None:
            delete_stream(nats_url, run)
        for broker in _brokers(namespace):
            declared = getattr(broker, "declared", None)
            if declared is not None and "rabbitmq" in block.servers:
                delete_names(set(declared.exchanges), set(declared.queues))
    printed = capsys.readouterr().out
    if block.shown is not None:
        assert printed == block.shown
    if _COMMENTED_PRINT.search(block.code):
        assert printed, "the page shows what it prints, and it printed nothing"
