"""A CLI argument that does not parse as a URL is masked as one only if it starts as a
mistyped URL: ``scheme:/`` or ``scheme//``, or a scheme brokerkit serves followed by a
colon. 57686a0 took any ``name:``, so a topic such as ``svc:v2@eu`` read as a URL whose
password is ``v2``, and every ``v2`` of a line was masked (``build ***.1``)."""

from __future__ import annotations

import pytest

from brokerkit.cli._output import redact


@pytest.mark.parametrize(
    "argument", ["svc:v2@eu", "orders:eu:v2@primary", "app:worker@v2", "--topic=svc:v2@eu"]
)
def test_a_topic_with_a_colon_and_an_at_masks_nothing(argument: str) -> None:
    line = "topic svc:v2@eu at v2 of build v2.1 (orders:eu:v2@primary, app:worker@v2)"
    assert redact(line, [argument]) == line


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("anything:/:S3cr3tPw@localhost/0", "S3cr3tPw"),
        ("anything//:S3cr3tPw@localhost/0", "S3cr3tPw"),
        ("redis+list:app:S3cr3tPw@localhost/0", "S3cr3tPw"),
        ("rediss:app:S3cr3tPw@localhost/0", "S3cr3tPw"),
    ],
)
def test_a_mistyped_url_is_still_masked(url: str, secret: str) -> None:
    assert secret not in redact(f"refused {secret} ({url})", [url])
