"""The CLI masks what follows a secret in the query by one rule, whether the URL parses
or is refused (a raw ``+`` in the secret): a following value shorter than
:data:`~brokerkit._secret_options.SHORT_VALUE` only as ``name=value`` (alone it would
mask every ``1`` of ``127.0.0.1``), a longer one alone too. The two paths had a
threshold each (``_url._SHORT_TAIL``, ``cli._output._SHORT``); they share one now."""

from __future__ import annotations

import pytest

from brokerkit._secret_options import SHORT_VALUE
from brokerkit.cli._output import redact

_SHORT = "7" * (SHORT_VALUE - 1)
_LONG = "9" * SHORT_VALUE


@pytest.mark.parametrize("secret", ["abcdef", "ab+cdef"], ids=["parses", "refused"])
def test_what_follows_a_secret_is_masked_by_one_rule(secret: str) -> None:
    url = f"redis+stream://127.0.0.1:1/0?sentinel_password={secret}&a={_SHORT}&b={_LONG}"
    said = f"at 127.0.0.1:1 a={_SHORT} b={_LONG} ({_SHORT}, {_LONG}) db 0"
    assert redact(said, [url]) == "at 127.0.0.1:1 *** b=*** (7777, ***) db 0"
