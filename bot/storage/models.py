"""What the bot remembers, as plain values: cogs never see rows, so any backend can serve them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "GuildSettings",
    "MemberSettings",
    "NarrationEmoji",
    "UsageRecord",
    "UsageSummary",
    "epoch",
]

NarrationEmoji = Literal["name", "drop"]


@dataclass(frozen=True, slots=True)
class MemberSettings:
    """A member's own choices, shared by every server ("my voice"); None means not chosen,
    so the bot falls back to the member's stable voice or the server default."""

    user_id: int
    voice: str | None = None
    temperature: float | None = None
    style: str | None = None

    @classmethod
    def defaults(cls, user_id: int) -> MemberSettings:
        return cls(user_id)


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """A server's choices; None on a limit means the bot-wide setting applies."""

    guild_id: int
    narration_channel_id: int | None = None
    #: Read only members who are in the bot's voice channel.
    narration_voice_only: bool = True
    #: Messages starting with it are not read; "" reads everything.
    narration_skip_prefix: str = ";"
    narration_max_length: int = 300
    narration_emoji: NarrationEmoji = "name"
    narration_say_names: bool = True
    #: Skip messages sent with @silent (they asked not to notify anyone).
    narration_skip_silent: bool = False
    max_text_length: int | None = None
    user_cooldown: float | None = None
    #: Requests per member per day; None is unlimited.
    daily_quota: int | None = None
    #: None lets everyone use the bot.
    allowed_role_id: int | None = None
    allow_files: bool = True
    allow_voice: bool = True

    @classmethod
    def defaults(cls, guild_id: int) -> GuildSettings:
        return cls(guild_id)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One request, for cost reports and quotas. Never the message text: members' words are not
    kept."""

    guild_id: int | None
    user_id: int
    #: When it happened; must be timezone-aware so windows are UTC whatever the host's zone.
    at: datetime
    #: The HTTP status, or None when the network failed before one arrived.
    status: int | None
    #: Seconds the call took.
    latency: float
    audio_seconds: float
    cost: float
    #: Served from the cache: no API call, no cost.
    cached: bool = False

    def __post_init__(self) -> None:
        epoch(self.at)


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """Totals over a window. `calls` counts every request; `cached` of them made no API call."""

    calls: int = 0
    failures: int = 0
    audio_seconds: float = 0.0
    cost: float = 0.0
    cached: int = 0

    @property
    def audio_minutes(self) -> float:
        return self.audio_seconds / 60

    @property
    def api_calls(self) -> int:
        """Requests that reached the API, the ones that are paid for."""
        return self.calls - self.cached


def epoch(at: datetime) -> float:
    """UTC epoch seconds; a naive datetime is refused because its zone is a guess."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware (use datetime.now(UTC))")
    return at.timestamp()
