"""Speaking styles: a member's short word becomes the natural-language direction Gemini follows.

Gemini TTS is steered by prose ("Say cheerfully: …"), so presets map to tested phrasings and
free text is wrapped so that it reads as a direction rather than as words to speak.
"""

from __future__ import annotations

import re

from bot.errors import InvalidRequestError
from bot.locales import line

__all__ = [
    "MAX_STYLE_LENGTH",
    "PACES",
    "PRESETS",
    "apply_style",
    "direction",
    "search_styles",
    "style_direction",
]

MAX_STYLE_LENGTH = 100

#: Preset name -> direction. Shown in autocomplete; free text is accepted too.
PRESETS: dict[str, str] = {
    "cheerful": "Say cheerfully",
    "excited": "Say excitedly",
    "calm": "Say calmly and slowly",
    "whispering": "Whisper",
    "sad": "Say sadly",
    "angry": "Say angrily",
    "serious": "Say in a serious, measured tone",
    "warm": "Say warmly, in a welcoming tone",
    "spooky": "In a spooky whisper, say",
    "narrator": "Read this like an audiobook narrator",
    "news": "Read this like a news anchor",
    "sarcastic": "Say sarcastically",
    "tired": "Say in a tired, sleepy voice",
    "pirate": "Say like a pirate",
}

_DIRECTION_START = re.compile(
    r"^(say|read|speak|whisper|shout|sing|narrate|announce|in |with |like |as )", re.IGNORECASE
)
_ADVERB = re.compile(r"^\w+ly\b", re.IGNORECASE)


def style_direction(style: str) -> str:
    """The direction for a style: a preset's phrasing, or free text made into a direction."""
    cleaned = " ".join(style.split()).strip(" :.,;")
    if not cleaned:
        return ""
    if len(cleaned) > MAX_STYLE_LENGTH:
        raise InvalidRequestError(
            line("request.style_too_long", length=len(cleaned), limit=MAX_STYLE_LENGTH)
        )
    preset = PRESETS.get(cleaned.casefold())
    if preset:
        return preset
    if _DIRECTION_START.match(cleaned):
        return cleaned[0].upper() + cleaned[1:]
    if _ADVERB.match(cleaned):
        return f"Say {cleaned}"
    return f"Say it in a {cleaned} way"


#: A member's pace, as words Gemini follows like any other direction: a request to speak
#: slower or faster, not a rate the audio is held to. "normal" asks nothing, so speech at the
#: normal pace is the same request (and the same cached clip) as speech with no pace at all.
PACES: dict[str, str] = {"slow": "at a slow pace", "normal": "", "fast": "at a fast pace"}


def direction(style: str | None, pace: str | None = None) -> str:
    """The whole direction for a style and a pace ("Say cheerfully, at a slow pace")."""
    said = style_direction(style or "")
    paced = PACES.get((pace or "").casefold(), "")
    if not paced:
        return said
    return f"{said}, {paced}" if said else f"Say {paced}"


def apply_style(text: str, style: str | None, pace: str | None = None) -> str:
    """Prefix `text` with the direction, the way Gemini's docs phrase prompts. The direction is
    part of the request's text, so the cache key covers the style and the pace."""
    said = direction(style, pace)
    return f"{said}: {text}" if said else text


def search_styles(query: str, *, limit: int = 25) -> list[str]:
    """Presets matching what a member typed, for autocomplete."""
    q = query.strip().casefold()
    names = [name for name in PRESETS if q in name] if q else list(PRESETS)
    return names[:limit]
