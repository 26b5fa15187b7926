"""Checks on settings changes, shared by every backend so a bad value fails the same way
everywhere, before it is stored. Messages name the setting, so cogs can show them as they are."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, get_args

from bot.errors import InvalidRequestError
from bot.locales import line
from bot.speech.pronunciations import MAX_ENTRIES, check_entry, normalize_word
from bot.speech.request import MAX_TEMPERATURE, MIN_TEMPERATURE
from bot.speech.styles import MAX_STYLE_LENGTH, PACES
from bot.speech.voices import get_voice
from bot.storage.models import NarrationEmoji

__all__ = [
    "GUILD_CHECKS",
    "MAX_REPEAT",
    "MAX_SAID",
    "MAX_SKIP_PREFIX",
    "MAX_SNOWFLAKE",
    "MAX_SPOKEN_NAME",
    "MAX_STALE_AFTER",
    "MEMBER_CHECKS",
    "MIN_STALE_AFTER",
    "Check",
    "guild_changes",
    "member_changes",
]

Check = Callable[[str, Any], Any]

MAX_SNOWFLAKE = 2**63 - 1
MAX_SKIP_PREFIX = 10
MAX_SAID = 60
MAX_SPOKEN_NAME = 60
#: Bounds, in seconds, on how old a waiting narration message may get (0 never skips). Below a
#: minute, an ordinary burst on a 5-calls-a-minute key (a call every 12 s) would already lose
#: messages, and `/settings` offers whole minutes anyway; past an hour, "never" says it better.
MIN_STALE_AFTER = 60
MAX_STALE_AFTER = 3600
#: The most a server may let a character repeat in narration (2 is the least: 1 would read
#: "book" as "bok"). Bounded, since shortening costs time in proportion to it.
MAX_REPEAT = 10


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


def _stale_after(name: str, value: Any) -> int:
    """Not `_whole`: 0 is allowed (never skip) while the seconds just above it are not."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (value == 0 or MIN_STALE_AFTER <= value <= MAX_STALE_AFTER)
    ):
        raise ValueError(
            f"{name} must be 0 (never skip) or a whole number of seconds from "
            f"{MIN_STALE_AFTER} to {MAX_STALE_AFTER:,} ({MIN_STALE_AFTER // 60} to "
            f"{MAX_STALE_AFTER // 60} minutes)."
        )
    return value


def _max_repeat(name: str, value: Any) -> int:
    """0 (off) or 2 to MAX_REPEAT: once, "book" would be read "bok"."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (value == 0 or 2 <= value <= MAX_REPEAT)
    ):
        raise ValueError(line("settings.max_repeat", option=name, limit=MAX_REPEAT))
    return value


def _pace(name: str, value: Any) -> str:
    if not isinstance(value, str) or value.strip().casefold() not in PACES:
        raise ValueError(f"{name} must be one of: {', '.join(PACES)}.")
    return value.strip().casefold()


def _voice(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a voice name.")
    return get_voice(value).name  # UnknownVoiceError is a ValueError with suggestions.


def _emoji(name: str, value: Any) -> str:
    choices = get_args(NarrationEmoji)
    if value not in choices:
        raise ValueError(f"{name} must be one of: {', '.join(choices)}.")
    return str(value)


def _said(name: str, value: Any) -> str:
    """The "X said" wording: short, and it must say where the name goes."""
    text = str(_text(MAX_SAID, empty_is_none=False)(name, value))
    if text.count("{name}") != 1 or "{" in text.replace("{name}", ""):
        raise ValueError(line("settings.said_needs_name", option=name))
    return text


def _pronunciations(name: str, value: Any) -> tuple[tuple[str, str], ...]:
    """(word, say_as) pairs, each checked, one per word whatever its case, at most 200."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list of (word, say as) pairs.")
    pairs: dict[str, tuple[str, str]] = {}
    for pair in value:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValueError(f"{name} must be a list of (word, say as) pairs.")
        word, say_as = pair
        if not isinstance(word, str) or not isinstance(say_as, str):
            raise ValueError(f"{name} must be a list of (word, say as) pairs.")
        try:
            checked = check_entry(word, say_as)
        except InvalidRequestError as exc:
            raise ValueError(exc.user_message) from None
        pairs[normalize_word(checked[0])] = checked
    if len(pairs) > MAX_ENTRIES:
        raise ValueError(f"{name} may hold at most {MAX_ENTRIES} words.")
    return tuple(pairs.values())


_snowflake = _whole(1, MAX_SNOWFLAKE)

MEMBER_CHECKS: dict[str, Check] = {
    "voice": _optional(_voice),
    "temperature": _optional(_number(MIN_TEMPERATURE, MAX_TEMPERATURE)),
    # A blank style clears it rather than storing a direction that says nothing.
    "style": _optional(_text(MAX_STYLE_LENGTH, empty_is_none=True)),
    "voice_message": _optional(_flag),
    "spoken_name": _optional(_text(MAX_SPOKEN_NAME, empty_is_none=True)),
    "narrate_me": _optional(_flag),
    "pace": _optional(_pace),
    "voice_2": _optional(_voice),
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
    "narration_said": _optional(_said),
    "narration_merge_speakers": _flag,
    "narration_stale_after": _stale_after,
    "pronunciations": _pronunciations,
    "narration_ignore_stage_audience": _flag,
    "narration_require_prefix": _text(MAX_SKIP_PREFIX, empty_is_none=False),
    "narration_max_repeat": _max_repeat,
    "pace": _optional(_pace),
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
