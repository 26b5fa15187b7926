"""Checks on settings changes, shared by every backend so a bad value fails the same way
everywhere, before it is stored. Messages name the setting, so cogs can show them as they are."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, get_args

from bot.speech.request import MAX_TEMPERATURE, MIN_TEMPERATURE
from bot.speech.styles import MAX_STYLE_LENGTH
from bot.speech.voices import get_voice
from bot.storage.models import NarrationEmoji

__all__ = [
    "GUILD_CHECKS",
    "MAX_SKIP_PREFIX",
    "MAX_SNOWFLAKE",
    "MEMBER_CHECKS",
    "Check",
    "guild_changes",
    "member_changes",
]

Check = Callable[[str, Any], Any]

MAX_SNOWFLAKE = 2**63 - 1
MAX_SKIP_PREFIX = 10


def _optional(check: Check) -> Check:
    def optional(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return optional


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false.")
    return value


def _whole(low: int, high: int) -> Check:
    def whole(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be a whole number from {low:,} to {high:,}.")
        return value

    return whole


def _number(low: float, high: float) -> Check:
    def number(name: str, value: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            raise ValueError(f"{name} must be a number from {low:g} to {high:g}.")
        return float(value)

    return number


def _text(max_length: int, *, empty_is_none: bool) -> Check:
    def text(name: str, value: Any) -> str | None:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be text.")
        cleaned = " ".join(value.split())
        if len(cleaned) > max_length:
            raise ValueError(f"{name} must be at most {max_length} characters.")
        return None if empty_is_none and not cleaned else cleaned

    return text


def _voice(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a voice name.")
    return get_voice(value).name  # UnknownVoiceError is a ValueError with suggestions.


def _emoji(name: str, value: Any) -> str:
    choices = get_args(NarrationEmoji)
    if value not in choices:
        raise ValueError(f"{name} must be one of: {', '.join(choices)}.")
    return str(value)


_snowflake = _whole(1, MAX_SNOWFLAKE)

MEMBER_CHECKS: dict[str, Check] = {
    "voice": _optional(_voice),
    "temperature": _optional(_number(MIN_TEMPERATURE, MAX_TEMPERATURE)),
    # A blank style clears it rather than storing a direction that says nothing.
    "style": _optional(_text(MAX_STYLE_LENGTH, empty_is_none=True)),
}

GUILD_CHECKS: dict[str, Check] = {
    "narration_channel_id": _optional(_snowflake),
    "narration_voice_only": _flag,
    "narration_skip_prefix": _text(MAX_SKIP_PREFIX, empty_is_none=False),
    "narration_max_length": _whole(1, 4000),
    "narration_emoji": _emoji,
    "narration_say_names": _flag,
    "narration_skip_silent": _flag,
    "max_text_length": _optional(_whole(1, 20_000)),
    "user_cooldown": _optional(_number(0, 3600)),
    "daily_quota": _optional(_whole(0, 1_000_000)),
    "allowed_role_id": _optional(_snowflake),
    "allow_files": _flag,
    "allow_voice": _flag,
}


def member_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The changes, checked and normalised; ValueError names what is wrong."""
    return _checked(changes, MEMBER_CHECKS, "member")


def guild_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The changes, checked and normalised; ValueError names what is wrong."""
    return _checked(changes, GUILD_CHECKS, "server")


def _checked(changes: Mapping[str, Any], checks: Mapping[str, Check], kind: str) -> dict[str, Any]:
    unknown = sorted(set(changes) - set(checks))
    if unknown:
        raise ValueError(
            f"Unknown {kind} setting{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
            f"Known: {', '.join(checks)}."
        )
    return {name: checks[name](name, value) for name, value in changes.items()}
