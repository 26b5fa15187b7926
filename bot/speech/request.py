"""What one speech request asks for, validated before it can cost an API call."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from bot.errors import InvalidRequestError
from bot.locales import line, message_of
from bot.speech.styles import PACES, apply_style
from bot.speech.voices import DEFAULT_VOICE, UnknownVoiceError, get_voice

__all__ = [
    "DEFAULT_TEMPERATURE",
    "MAX_TEMPERATURE",
    "MIN_TEMPERATURE",
    "SpeechRequest",
    "build_request",
    "looks_like_dialogue",
    "text_limit",
]

MIN_TEMPERATURE = 0.0
MAX_TEMPERATURE = 2.0
DEFAULT_TEMPERATURE = 0.4


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """A checked request: trimmed text, canonical voice names, a temperature in range."""

    text: str
    voice: str = DEFAULT_VOICE
    voice_2: str | None = None
    temperature: float = DEFAULT_TEMPERATURE

    def payload(self) -> dict[str, Any]:
        """The exact JSON body: `voice_2` only when a second speaker was asked for."""
        body: dict[str, Any] = {
            "text": self.text,
            "voice_1": self.voice,
            "temperature": self.temperature,
        }
        if self.voice_2 is not None:
            body["voice_2"] = self.voice_2
        return body


def text_limit(operator: int, server: int | None) -> int:
    """The longest text one request may speak in a server, the one figure every path uses
    (/speak, "Speak this message", narration, /settings show). A server may lower the
    operator's MAX_TEXT_LENGTH, never raise it: the operator's limit bounds the work and the
    money one request can cause, so a higher server figure is not the one in force."""
    return operator if server is None else min(operator, server)


#: A line opening with a speaker's label: "Joe: …".
_LABEL = re.compile(r"^[ \t]*([^\s:][^:\n]{0,31}):", re.MULTILINE)


def looks_like_dialogue(text: str) -> bool:
    """Two speakers' labelled lines ("Joe: … / Jane: …"): what a member's saved second voice
    is for. Other text keeps one voice, as if no second voice were saved."""
    return len({match[1].strip().casefold() for match in _LABEL.finditer(text)}) >= 2


def build_request(
    text: str,
    *,
    voice: str | None = None,
    voice_2: str | None = None,
    temperature: float | None = None,
    style: str | None = None,
    pace: str | None = None,
    max_length: int = 2000,
    default_voice: str = DEFAULT_VOICE,
    default_temperature: float = DEFAULT_TEMPERATURE,
) -> SpeechRequest:
    """Validate raw input into a `SpeechRequest`, or raise `InvalidRequestError` saying why.

    The length limit applies to what the member wrote; a style direction is added after.
    """
    cleaned = (text or "").strip()
    if not cleaned:
        raise InvalidRequestError(line("request.no_text"))
    if len(cleaned) > max_length:
        raise InvalidRequestError(line("request.too_long", length=len(cleaned), limit=max_length))
    first = _voice(voice if voice and voice.strip() else default_voice, "voice")
    second = _voice(voice_2, "voice_2") if voice_2 and voice_2.strip() else None
    temp = default_temperature if temperature is None else temperature
    if not isinstance(temp, int | float) or not math.isfinite(temp):
        raise InvalidRequestError(line("request.temperature_number"))
    if not MIN_TEMPERATURE <= temp <= MAX_TEMPERATURE:
        raise InvalidRequestError(line("request.temperature_range", given=temp))
    if pace is not None and pace.casefold() not in PACES:
        raise InvalidRequestError(line("request.pace", paces=", ".join(PACES), given=pace))
    prompt = apply_style(cleaned, style, pace)
    return SpeechRequest(text=prompt, voice=first, voice_2=second, temperature=float(temp))


def _voice(name: str | None, option: str) -> str:
    try:
        return get_voice(name or "").name
    except UnknownVoiceError as exc:
        raise InvalidRequestError(
            line("request.option_problem", option=option, problem=message_of(exc))
        ) from None
