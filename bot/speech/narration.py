"""Narration: which messages are read aloud, and what is said for each, without Discord types.

The cog turns a discord.Message into `MessageFacts` and asks here; the rules come from the
server's settings, the voice from the member's (or a stable one picked from their id).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bot.speech.cleanup import (
    CleanupOptions,
    MessageFacts,
    SpeakerPrefixer,
    clean_message,
    with_prefix,
)
from bot.speech.voices import voice_for_user
from bot.storage import GuildSettings, MemberSettings

__all__ = ["SAME_SPEAKER_WINDOW", "NarrationRules", "Narrator", "member_voice", "skip_reason"]

#: "Alice said" is skipped when Alice also spoke in the channel within this many seconds.
SAME_SPEAKER_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class NarrationRules:
    skip_prefix: str = ";"
    voice_only: bool = True
    max_length: int = 300
    emoji: Literal["name", "drop"] = "name"
    say_names: bool = True

    @classmethod
    def from_guild(cls, guild: GuildSettings) -> NarrationRules:
        return cls(
            skip_prefix=guild.narration_skip_prefix,
            voice_only=guild.narration_voice_only,
            max_length=guild.narration_max_length,
            emoji=guild.narration_emoji,
            say_names=guild.narration_say_names,
        )


def skip_reason(
    content: str, *, author_is_bot: bool, author_in_voice: bool, rules: NarrationRules
) -> str | None:
    """Why a message is not read, or None to read it."""
    if author_is_bot:
        return "written by a bot"
    if rules.skip_prefix and content.lstrip().startswith(rules.skip_prefix):
        return "starts with the skip prefix"
    if rules.voice_only and not author_in_voice:
        return "author is not in the voice channel"
    return None


def member_voice(settings: MemberSettings) -> str:
    """The member's chosen voice, or the one their id always gets."""
    return settings.voice or voice_for_user(settings.user_id).name


class Narrator:
    """Composes what is said for each message, remembering who spoke last in each channel."""

    def __init__(
        self, *, window: float = SAME_SPEAKER_WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._prefixer = SpeakerPrefixer(window)
        self._clock = clock

    def compose(
        self,
        facts: MessageFacts,
        *,
        channel_id: int,
        author_id: int,
        author_name: str,
        rules: NarrationRules,
    ) -> str:
        """The words to speak ("Alice said: …"), or "" when nothing is worth reading."""
        options = CleanupOptions(emoji=rules.emoji, max_length=rules.max_length)
        text = clean_message(facts, options)
        if not text:
            return ""
        prefix = (
            self._prefixer.prefix(
                channel_id, author_id, author_name, self._clock(), reply=facts.is_reply
            )
            if rules.say_names
            else None
        )
        return with_prefix(prefix, text)
