"""Importing an instrumentation module without its extra says which extra to install.

Before, ``import brokerkit.instrumentation.prometheus`` without prometheus-client failed
with Python's bare ``No module named 'prometheus_client'``, and the OpenTelemetry module
without opentelemetry-instrumentation (opentelemetry-api alone is often installed, by
another library) with ``No module named 'opentelemetry.instrumentation'``: neither named
the ``pybrokerkit[...]`` extra, as the backends and the CLI do. The error stays a
ModuleNotFoundError naming the missing module, so ``except ImportError`` and
``pytest.importorskip`` still see it for what it is.
"""

from __future__ import annotations

import importlib
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("brokerkit.instrumentation.prometheus", "prometheus_client", "prometheus"),
        ("brokerkit.instrumentation.opentelemetry", "opentelemetry", "opentelemetry"),
        (
            "brokerkit.instrumentation.opentelemetry",
            "opentelemetry.instrumentation",
            "opentelemetry",
        ),
    ],
    ids=["prometheus", "opentelemetry-api", "opentelemetry-instrumentation"],
)
def test_a_missing_extra_is_named(
    monkeypatch: pytest.MonkeyPatch, module: str, missing: str, extra: str
) -> None:
    # None in sys.modules: the import of that module fails as if it were not installed
    # (restored, with the instrumentation module already imported, after the test)
    for name in [n for n in sys.modules if n == missing or n.startswith(missing + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)
    if module in sys.modules:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ModuleNotFoundError) as caught:
        importlib.import_module(module)
    text = str(caught.value)
    assert f'pip install "pybrokerkit[{extra}]"' in text
    assert module in text
    assert (caught.value.name or "").startswith(missing)  # the missing module, kept
    assert module not in sys.modules  # nothing half-imported is left behind
