"""The docs build as CI runs it: every cross-reference resolves, and the pages it makes
show what the references promise.

With ``nitpicky`` off, ``{class}`~brokerkit.InvalidURL``` (documented as
``brokerkit.exceptions.InvalidURL``) and
``{func}`~brokerkit.hookspecs.brokerkit_register_backends``` (the hook reference
documented no hook) rendered as plain text, silently.
"""

from __future__ import annotations

import html
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")
pytest.importorskip("furo")

ROOT = Path(__file__).resolve().parent.parent
HOOKS = (
    "brokerkit_register_backends",
    "brokerkit_register_commands",
    "brokerkit_publish_start",
    "brokerkit_publish_end",
    "brokerkit_deliver_start",
    "brokerkit_deliver_end",
    "brokerkit_on_ack",
    "brokerkit_on_nack",
    "brokerkit_on_dead_letter",
    "brokerkit_on_lease_lost",
)


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The html build of docs/, run with CI's command (warnings are errors)."""
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    result = subprocess.run(
        [*command, str(ROOT / "docs"), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return result, out


@pytest.mark.parametrize("hook", HOOKS)
def test_the_hook_reference_documents_each_hook(
    built: tuple[subprocess.CompletedProcess[str], Path], hook: str
) -> None:
    _, out = built
    page = (out / "reference" / "hooks.html").read_text()
    assert f'id="brokerkit.hookspecs.{hook}"' in page, f"docs/reference/hooks.md leaves out {hook}"


def _text(page: Path) -> str:
    """A built page's text, tags dropped and white space made single spaces."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", page.read_text())))


@pytest.mark.parametrize(
    "sentence",
    [
        # Broker.max_payload_bytes and AsyncBroker's: napoleon made the words before the
        # colon a type of three unknown classes, and the page began at "no limit".
        "the backend can store in one message (None: no limit of its own). A larger",
        "Where leases read the time (keyword only): a ManualClock in tests.",
        "The broker holds a message until a due time: publish(..., delay=)",
    ],
)
def test_an_attribute_docstring_reads_as_written(
    built: tuple[subprocess.CompletedProcess[str], Path], sentence: str
) -> None:
    _, out = built
    assert sentence in _text(out / "reference" / "api.html")


def test_an_unresolved_reference_fails_the_build(
    built: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, _ = built
    conf = runpy.run_path(str(ROOT / "docs" / "conf.py"))
    assert conf["nitpicky"] is True
    assert result.returncode == 0, result.stderr


def test_a_broken_markdown_link_fails_the_build() -> None:
    """MyST's warning for a [link](page.md#heading) that resolves nowhere is not muted."""
    conf = runpy.run_path(str(ROOT / "docs" / "conf.py"))
    assert not {"myst", "myst.xref_missing"} & set(conf["suppress_warnings"])


@pytest.mark.parametrize(
    ("page", "target"),
    [
        ("delays", "brokerkit.exceptions.InvalidOption"),
        ("delays", "brokerkit.exceptions.Unsupported"),
        ("plugins", "brokerkit.exceptions.InvalidURL"),
        ("plugins", "brokerkit.exceptions.ConnectionFailed"),
        ("plugins", "brokerkit.exceptions.StaleDelivery"),
        ("plugins", "brokerkit.exceptions.SchemeConflict"),
        ("plugins", "brokerkit.exceptions.PluginError"),
        ("plugins", "brokerkit.hookspecs.brokerkit_register_backends"),
        ("workers", "brokerkit.exceptions.InvalidOption"),
        ("workers", "brokerkit.exceptions.SerializationError"),
        ("cli", "brokerkit.exceptions.BrokerError"),
        ("backends/nats", "brokerkit.exceptions.PermissionDenied"),
        ("backends/kombu", "brokerkit.exceptions.InvalidOption"),
        ("reference/hooks", "brokerkit.hookimpl"),
        ("reference/api", "brokerkit.BrokerURL.host"),
        ("reference/api", "brokerkit.aio.AsyncSubscription.__aiter__"),
    ],
)
def test_a_public_name_links_to_its_entry(
    built: tuple[subprocess.CompletedProcess[str], Path], page: str, target: str
) -> None:
    """brokerkit.InvalidURL, which users import, links to the entry documenting it."""
    _, out = built
    assert re.search(
        rf'<a [^>]*href="[^"]*#{re.escape(target)}"', (out / f"{page}.html").read_text()
    )
