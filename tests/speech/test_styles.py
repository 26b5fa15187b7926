from __future__ import annotations

import pytest

from bot.errors import InvalidRequestError
from bot.speech.request import build_request
from bot.speech.styles import MAX_STYLE_LENGTH, PRESETS, apply_style, search_styles, style_direction


@pytest.mark.parametrize(
    ("style", "direction"),
    [
        ("cheerful", "Say cheerfully"),
        ("  Whispering ", "Whisper"),
        ("slowly and clearly", "Say slowly and clearly"),
        ("like a pirate", "Like a pirate"),
        ("in a spooky voice:", "In a spooky voice"),
        ("Read this as a bedtime story", "Read this as a bedtime story"),
        ("bored teenager", "Say it in a bored teenager way"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_style_becomes_a_direction(style: str, direction: str) -> None:
    assert style_direction(style) == direction


def test_apply_style_prefixes_the_text() -> None:
    assert apply_style("Good morning!", "cheerful") == "Say cheerfully: Good morning!"
    assert apply_style("Good morning!", None) == "Good morning!"


def test_build_request_limits_the_members_text_not_the_direction() -> None:
    request = build_request("x" * 20, style="narrator", max_length=20)
    assert request.text == "Read this like an audiobook narrator: " + "x" * 20


def test_overlong_style_is_refused() -> None:
    with pytest.raises(InvalidRequestError):
        style_direction("a" * (MAX_STYLE_LENGTH + 1))


def test_search_styles() -> None:
    assert search_styles("") == list(PRESETS)[:25]
    assert search_styles("whis") == ["whispering"]
    assert search_styles("zzz") == []
