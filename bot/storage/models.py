"""What the bot remembers, as plain values: cogs never see rows, so any backend can serve them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "DEFAULT_MAX_REPEAT",
    "DEFAULT_SAID",
    "DEFAULT_STALE_AFTER",
    "GuildSettings",
    "MemberSettings",
    "NarrationEmoji",
    "UsageRecord",
    "UsageSummary",
    "epoch",
    "guild_from_row",
    "guild_to_row",
]

NarrationEmoji = Literal["name", "drop"]

#: How narration announces a speaker unless the server words it otherwise.
DEFAULT_SAID = "{name} said"

#: Seconds a narration message may wait before it is skipped rather than read late; migration 5
#: gives existing servers the same value.
DEFAULT_STALE_AFTER = 300

#: How many times narration reads a repeated character unless a server says otherwise;
#: migration 6 gives existing servers the same value.
DEFAULT_MAX_REPEAT = 3

#: A server's dictionary: (word, say_as) pairs, in the order they were added.
Pronunciation = tuple[str, str]


@dataclass(frozen=True, slots=True)
class MemberSettings:
    """A member's own choices, shared by every server ("my voice"); None means not chosen,
    so the bot falls back to the member's stable voice or the server default."""

    user_id: int
    voice: str | None = None
    temperature: float | None = None
    style: str | None = None
    #: Post /speak's speech as a voice message (the waveform bubble) unless asked otherwise.
    voice_message: bool | None = None
    #: How narration says this member's name ("Nwin" for "Nguyen"); None reads their name.
    spoken_name: str | None = None
    #: False: narration never reads this member's messages, in any server. None is yes.
    narrate_me: bool | None = None
    #: "slow", "normal" or "fast", said to Gemini as a direction; None follows the server.
    pace: str | None = None
    #: The second speaker's voice for /speak's dialogues, when voice_2 is not given.
    voice_2: str | None = None

    @property
    def narrated(self) -> bool:
        """Whether narration may read this member (unless they said no, it may)."""
        return self.narrate_me is not False

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
    #: The "X said" wording with a {name} placeholder; None is DEFAULT_SAID.
    narration_said: str | None = None
    #: Narration that is behind may read two members' messages in one two-speaker call.
    narration_merge_speakers: bool = False
    #: Seconds a waiting message may get before narration skips it instead of reading it
    #: late (a shared, rate-limited key can fall minutes behind); 0 never skips.
    narration_stale_after: int = DEFAULT_STALE_AFTER
    #: The server's own pronunciations, applied to everything the bot says here.
    pronunciations: tuple[Pronunciation, ...] = ()
    #: Narration does not read members listening in a Stage's audience.
    narration_ignore_stage_audience: bool = False
    #: When set, narration reads only messages starting with it (said without it).
    narration_require_prefix: str = ""
    #: A character repeated more than this is read this many times ("aaaaaaa" as "aaa");
    #: 0 reads repeats as written.
    narration_max_repeat: int = DEFAULT_MAX_REPEAT
    #: The pace members get unless they chose their own; None is Gemini's own ("normal").
    pace: str | None = None

    @classmethod
    def defaults(cls, guild_id: int) -> GuildSettings:
        return cls(guild_id)

    @property
    def said(self) -> str:
        """The wording in effect, the default when the server chose none."""
        return self.narration_said or DEFAULT_SAID


def guild_to_row(values: dict[str, Any]) -> dict[str, Any]:
    """Column values for `values`: the dictionary is stored as JSON text, in every backend."""
    if "pronunciations" in values:
        pairs = [list(pair) for pair in values["pronunciations"]]
        values = {**values, "pronunciations": json.dumps(pairs, ensure_ascii=False)}
    return values


def guild_from_row(row: dict[str, Any]) -> GuildSettings:
    """A stored row back as settings; the dictionary's JSON text becomes pairs again."""
    raw = row.get("pronunciations")
    if isinstance(raw, str):
        row = {**row, "pronunciations": tuple((str(w), str(s)) for w, s in json.loads(raw))}
    return GuildSettings(**row)


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
