"""A secret option's name written after another secret may be part of that secret's
value (``sentinel_password=a&zqpwd=b`` may be one password, split at a raw ``&``):
no message names it. The refusal of an option given twice said "the second time after
'zqpwd'", and an option's refusal after it "may be the end of zqpwd's value": both
named the later one. Found by hypothesis (tests/test_url_review26_secret_tail.py,
whose own filter let a secret name, ``pw``, in where the test takes none)."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.exceptions import InvalidOption, InvalidURL

BASE = "redis+stream://h1:26379/0?sentinel=m&sentinel_password=a1b2"


def test_an_option_given_twice_after_two_secrets_names_the_first() -> None:
    with pytest.raises(InvalidURL) as refused:
        brokerkit.connect(f"{BASE}&zqpwd=c3d4&zqpwd=4")
    text = str(refused.value)
    assert "zqpwd" not in text and "c3d4" not in text and "a1b2" not in text
    assert "the second time after 'sentinel_password'" in text


def test_an_unknown_option_after_two_secrets_names_the_first() -> None:
    with pytest.raises(InvalidOption) as refused:
        brokerkit.connect(f"{BASE}&zqpwd=c3d4&nosuch=5")
    text = str(refused.value)
    assert "zqpwd" not in text and "c3d4" not in text and "nosuch" not in text
    assert "sentinel_password" in text
