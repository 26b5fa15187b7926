from __future__ import annotations

import math
from typing import Any

import pytest

from bot.errors import InvalidRequestError
from bot.speech.request import build_request


def test_payload_is_exactly_the_documented_body() -> None:
    request = build_request("  Hello there  ", voice="kore", temperature=0.7)
    assert request.payload() == {"text": "Hello there", "voice_1": "Kore", "temperature": 0.7}


def test_voice_2_is_sent_only_when_asked_for() -> None:
    request = build_request("Joe: hi / Jane: hey", voice="Puck", voice_2="charon")
    assert request.payload()["voice_2"] == "Charon"
    assert "voice_2" not in build_request("hi", voice_2="  ").payload()


def test_defaults_come_from_the_caller() -> None:
    request = build_request("hi", default_voice="Leda", default_temperature=1.1)
    assert (request.voice, request.temperature) == ("Leda", 1.1)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"text": ""}, "no text"),
        ({"text": " \n\t "}, "no text"),
        ({"text": "x" * 11, "max_length": 10}, "limit is 10"),
        ({"text": "hi", "voice": "Bob"}, "not one of the 30 voices"),
        ({"text": "hi", "voice_2": "Korr"}, "Did you mean Kore"),
        ({"text": "hi", "temperature": 2.01}, "from 0 to 2"),
        ({"text": "hi", "temperature": -0.1}, "from 0 to 2"),
        ({"text": "hi", "temperature": math.nan}, "from 0 to 2"),
        ({"text": "hi", "temperature": math.inf}, "from 0 to 2"),
    ],
)
def test_invalid_input_is_refused_with_a_friendly_reason(
    kwargs: dict[str, Any], fragment: str
) -> None:
    text = kwargs.pop("text")
    with pytest.raises(InvalidRequestError) as info:
        build_request(text, **kwargs)
    assert fragment in info.value.user_message


def test_limit_counts_trimmed_text() -> None:
    assert build_request("  " + "x" * 10 + "  ", max_length=10).text == "x" * 10
