"""A ``{class}``, ``{func}``, ``{mod}`` or ``{exc}`` reference on these pages names an
object the API reference documents under that very name, so that Sphinx links it.

The docs build does not warn about a reference it cannot resolve (``nitpicky`` is off),
so ``{class}`~brokerkit.InvalidURL``` (the exceptions are documented as
``brokerkit.exceptions.InvalidURL``) rendered as plain text, silently: a reader found no
link where the page promised one.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = (
    "README.md",
    "docs/index.md",
    "docs/quickstart.md",
    "docs/patterns.md",
    "docs/architecture.md",
    "docs/deployments.md",
    "docs/demo.md",
    "docs/wire-format.md",
    "docs/security.md",
)
_ROLE = re.compile(r"\{(class|func|meth|mod|exc|attr|data)\}`~?(?:[^`<]*<)?([\w.]+)>?`")
_AUTO = re.compile(r"^\.\. auto(class|function|data|module|exception):: ([\w.]+)", re.MULTILINE)


def _documented() -> set[str]:
    """The dotted names the reference pages document, with an automodule's members."""
    names: set[str] = set()
    for page in (ROOT / "docs" / "reference").glob("*.md"):
        for kind, name in _AUTO.findall(page.read_text()):
            names.add(name)
            if kind == "module":
                module = importlib.import_module(name)
                members = getattr(module, "__all__", None) or [
                    member for member in vars(module) if not member.startswith("_")
                ]
                names.update(f"{name}.{member}" for member in members)
    return names


DOCUMENTED = _documented()


def _references() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = (ROOT / page).read_text()
        for match in _ROLE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{page}:{line}", match[2]))
    return found


def test_the_reference_documents_the_exceptions() -> None:
    assert "brokerkit.exceptions.InvalidURL" in DOCUMENTED
    assert "brokerkit.BrokerURL" in DOCUMENTED


@pytest.mark.parametrize(("where", "target"), _references(), ids=lambda value: str(value))
def test_a_reference_names_a_documented_object(where: str, target: str) -> None:
    assert target in DOCUMENTED, (
        f"{where}: {target} is not documented under that name in docs/reference/, "
        "so Sphinx renders it without a link"
    )
