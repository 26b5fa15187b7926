"""Making narration's calls: what a message reads as, admitting it through the one pipeline,
starting it as an utterance the player can queue, and telling a channel what was not read.
The base of `bot.playback.narration.NarrationReader` (split for size, one face)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import discord

from bot.errors import BotError
from bot.locales import Line, line, render
from bot.playback.connections import VoiceManager, VoiceTarget
from bot.playback.player import Utterance
from bot.playback.presence import caller_of, voice_channel_of
from bot.playback.rooms import Author, GuildNarration, NarrationRooms
from bot.speech.cleanup import MessageFacts
from bot.speech.control import estimate_seconds
from bot.speech.names import announced_name
from bot.speech.narration import AutoPrefix, NarrationRules, Narrator, Reading, skip_reason
from bot.storage import GuildSettings, MemberSettings, Storage
from bot.synthesis.service import Admission, Destination, SpeakOptions, SpeechService
from bot.synthesis.stream import SpeechStream

__all__ = ["NOT_READ", "Incoming", "NarrationCalls", "Read", "in_stage_audience"]

log = logging.getLogger(__name__)

#: At most one notice of each kind per channel in this many seconds.
NOTICE_INTERVAL = 60.0
#: The catalogue's key for a channel's "some messages were not read" notice (its {reason}).
NOT_READ = "narration.not_read"


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message as narration reads it, taken from Discord once by the cog."""

    message_id: int
    guild: discord.Guild
    channel: discord.abc.Messageable
    channel_id: int
    author: Author
    content: str
    facts: MessageFacts
    #: Discord's words (a join, a pin, a new thread), not a member's.
    system: bool = False
    #: Sent with @silent.
    silent: bool = False


@dataclass(frozen=True, slots=True)
class Read:
    """What one message reads as, with the settings it was decided under."""

    reading: Reading
    member: MemberSettings
    rules: NarrationRules


def without_warning(told: str) -> str:
    """A member's warning without its "⚠️ ", for a notice that says it in its own words; a
    catalogue line keeps its key, so the channel reads it in the server's language."""
    if isinstance(told, Line) and told.key == "playback.warning":
        message = told.fields["message"]
        return message if isinstance(message, str) else str(message)
    return told.removeprefix("⚠️ ")


def preferred_locale(guild: discord.Guild | None) -> str | None:
    """The server's language for what everyone hears ("Alice said"); a server Discord gave
    none (or a stand-in without one) is read in English."""
    locale = getattr(guild, "preferred_locale", None)
    return None if locale is None else str(getattr(locale, "value", locale))


def in_stage_audience(author: Author) -> bool:
    """Listening in a Stage's audience: in a Stage channel, and not one of its speakers
    (Discord marks the audience as suppressed)."""
    state = author.voice if isinstance(author, discord.Member) else None
    return (
        state is not None
        and isinstance(state.channel, discord.StageChannel)
        and bool(state.suppress)
    )


class NarrationCalls:
    """What every narration path shares: settings in, an utterance out."""

    def __init__(
        self,
        voices: VoiceManager,
        speech: SpeechService,
        storage: Storage,
        *,
        merge: bool = True,
        chunk_chars: int = 500,
        clock: Callable[[], float] | None = None,
        clock_rate: float = 1.0,
        on_unexpected: Callable[[str, str, BaseException], object] | None = None,
    ) -> None:
        self.voices = voices
        self.speech = speech
        self.storage = storage
        self.merge = merge
        self.chunk_chars = chunk_chars
        self.narrator = Narrator()
        self.rooms = NarrationRooms()
        self._clock = clock
        #: Seconds of `clock` per second of the event loop (a bench runs scaled time).
        self.clock_rate = clock_rate
        self._tasks: set[asyncio.Task[None]] = set()
        #: Told of an unexpected error (where, its reference, the error): the operator's alert.
        self.on_unexpected = on_unexpected
        #: Messages skipped as too old to be worth reading, since start (for the metrics).
        self.stale_skipped = 0

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def _compose(
        self,
        incoming: Incoming,
        settings: GuildSettings,
        voice_channel: VoiceTarget,
        prefix: str | AutoPrefix | None,
    ) -> Read | None:
        """What `incoming` reads as, or None (logged) if it is not read at all."""
        author = incoming.author
        author_channel = voice_channel_of(author)
        rules = NarrationRules.from_guild(
            settings,
            text_limit=self.speech.text_limit(settings),
            locale=preferred_locale(incoming.guild),
        )
        reason = skip_reason(
            incoming.content,
            author_is_bot=author.bot,
            author_in_voice=author_channel is not None and author_channel == voice_channel,
            rules=rules,
            system=incoming.system,
            silent=incoming.silent,
            stage_audience=in_stage_audience(author),
        )
        if reason is not None:
            log.debug("Not reading message %s: %s", incoming.message_id, reason)
            return None
        member = await self.storage.get_member(author.id)
        if not member.narrated:  # Their choice, in every server.
            log.debug("Not reading message %s: its author asked not to be", incoming.message_id)
            return None
        # The name as the member wants it said (/voice name), where they may change their
        # nickname; else as Discord shows it. An author without member data: unknown, so no.
        may_rename = isinstance(author, discord.Member) and author.guild_permissions.change_nickname
        reading = self.narrator.compose(
            incoming.facts,
            channel_id=incoming.channel_id,
            author_id=author.id,
            author_name=announced_name(
                member.spoken_name, author.display_name, may_change_nickname=may_rename
            ),
            rules=rules,
            prefix=prefix,
        )
        return Read(reading, member, rules) if reading.text else None

    async def _admit(
        self,
        guild_id: int,
        author: Author,
        read: Read,
        settings: GuildSettings,
        *,
        voices: tuple[str, str] | None = None,
        merged: bool = False,
    ) -> Admission:
        options = SpeakOptions(voice=voices[0], voice_2=voices[1]) if voices else SpeakOptions()
        return await self.speech.admit(
            caller_of(author, guild_id),
            read.reading.text,
            options,
            destination=Destination.NARRATION,
            guild=settings,
            member=read.member,
            # A merged reading is one call (no short first chunk: it is late anyway).
            short_first=not merged,
        )

    async def _start(
        self,
        room: GuildNarration,
        admission: Admission,
        author: Author,
        reading: Reading,
        channel: discord.abc.Messageable,
        message_id: int,
        *,
        label: str | None = None,
        later: bool = False,
    ) -> tuple[Utterance, SpeechStream] | None:
        """Begin making what was admitted, filed under `message_id` (a merged call's first
        message) in the player; None (logged) if the queue refuses it. `later`: the bot is in
        a Stage's audience, so the call is queued only once it may be heard (the player
        starts it), and until then a next message may still join it."""
        try:
            stream = self.speech.later(admission) if later else await self.speech.start(admission)
        except BotError as exc:
            log.info("Not reading message %s: %s", message_id, exc)
            return None
        utterance: Utterance

        def closed() -> None:
            stream.cancel()
            waiting = room.waiting.get(message_id)
            if waiting is not None and waiting.utterance is utterance:
                room.drop(waiting)

        async def notify(told: str) -> None:
            reason = without_warning(told)
            await self._notice(room, channel, "not_read", line(NOT_READ, reason=reason))

        utterance = Utterance(
            label=label or author.display_name,
            user_id=author.id,
            clips=self.speech.ogg_clips(stream.audio(), stream.requests[0]),
            on_close=closed,
            notify=notify,
            seconds=estimate_seconds(reading.text),
            source_id=message_id,
            start=stream.start if later else None,
        )
        return utterance, stream

    async def _notice(
        self,
        room: GuildNarration,
        channel: discord.abc.Messageable,
        kind: str,
        notice: str,
        *,
        interval: float = NOTICE_INTERVAL,
    ) -> None:
        """Tell the channel, once per interval at most for each kind of notice, in the
        server's language: the whole channel reads it."""
        if not room.may_notice(getattr(channel, "id", 0), kind, self._now(), interval):
            return
        said = render(notice, preferred_locale(getattr(channel, "guild", None)))
        try:
            await channel.send(said, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.info("Could not tell channel %s: %s", getattr(channel, "id", 0), exc)
