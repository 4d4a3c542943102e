"""Hypothesis settings profiles of the contract suite.

``default`` is fast enough for every local run and CI; ``thorough`` tries ten times
harder; ``smoke`` is a few derandomized examples without shrinking, for checking
quickly *that* a backend fails (the project's own broken-backend tests use it).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from hypothesis import HealthCheck, Phase, settings

from brokerkit.contracts.pytest_plugin import PROFILE_ENV

__all__ = ["PROFILES", "Kind", "contract_settings", "profile_name", "share_of"]

#: What a test costs per example: ``quick`` (a few round trips), ``timed`` (waits for a
#: visibility timeout on real-time backends) or ``stateful`` (a whole state machine run).
Kind = Literal["quick", "timed", "stateful"]

PROFILES: dict[str, dict[Kind, dict[str, Any]]] = {
    "default": {
        "quick": {"max_examples": 20},
        "timed": {"max_examples": 3},
        "stateful": {"max_examples": 10, "stateful_step_count": 25},
    },
    "thorough": {
        "quick": {"max_examples": 200},
        "timed": {"max_examples": 25},
        "stateful": {"max_examples": 100, "stateful_step_count": 60},
    },
    "smoke": {
        "quick": {"max_examples": 10},
        "timed": {"max_examples": 3},
        "stateful": {"max_examples": 10, "stateful_step_count": 25},
    },
}

_PROFILE_EXTRAS: dict[str, dict[str, Any]] = {
    "smoke": {
        "derandomize": True,
        "database": None,
        "phases": [Phase.explicit, Phase.generate],
    },
}

_COMMON: dict[str, Any] = {
    # A network backend's latency varies; per-example deadlines would only flake.
    "deadline": None,
    # Each example makes its own brokers and topics, so sharing the function-scoped
    # broker factory between examples is safe; and every backend's test class runs
    # the same inherited test methods, which is the point of a shared suite.
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.differing_executors,
    ],
}


def profile_name() -> str:
    """The active profile: ``$BROKERKIT_CONTRACT_PROFILE`` (set by ``--brokerkit-profile``),
    else ``default``; read when the suite's modules are imported.

    :raises ValueError: the variable names no profile.
    """
    name = os.environ.get(PROFILE_ENV, "") or "default"
    if name not in PROFILES:
        raise ValueError(
            f"{PROFILE_ENV}={name!r} is not a contract profile; valid: {', '.join(PROFILES)}"
        )
    return name


def contract_settings(kind: Kind = "quick") -> settings:
    """The hypothesis settings for a contract test of this ``kind`` under the active profile."""
    name = profile_name()
    return settings(**_COMMON, **_PROFILE_EXTRAS.get(name, {}), **PROFILES[name][kind])


def share_of(base: settings, share: float) -> settings:
    """``base`` with ``share`` of its examples (at least one)."""
    if share == 1.0:
        return base
    return settings(base, max_examples=max(1, round(base.max_examples * share)))
