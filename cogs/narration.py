"""Narration: while the bot is in voice, read a text channel aloud, each member in their voice.

Needs the privileged Message Content intent; without it the commands say so and nothing else
in the bot is affected.

Messages are read in the order they were written (one at a time per server up to the
queue, so a cache hit cannot overtake a slower message), follow their message while they
wait (a delete withdraws, an edit re-reads in place), and are read only from the channel
chosen: a text channel or a voice channel's own chat.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import BotError, NarrationDisabledError, NotInVoiceError
from bot.playback.connections import VoiceTarget
from bot.playback.player import GuildPlayer, Utterance
from bot.speech.control import estimate_seconds
from bot.speech.merging import Merged, Part
from bot.speech.names import announced_name
from bot.speech.narration import (
    AUTO,
    AutoPrefix,
    NarrationRules,
    Narrator,
    Reading,
    member_voice,
    skip_reason,
)
from bot.synthesis.service import Destination, SpeakOptions
from bot.synthesis.stream import SpeechStream
from bot.tree import NO_MENTIONS
from cogs._narration_waiting import Author, Waiting
from cogs._shared import caller_of, facts_from_message
from cogs.playback import bring_bot, caller_channel, check_voice_target

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = ["Narration", "setup"]

log = logging.getLogger(__name__)


#: Message types a member writes; every other type is Discord's (joins, pins, new threads).
READABLE_TYPES = (discord.MessageType.default, discord.MessageType.reply)
#: At most one "not read aloud" notice per channel in this many seconds.
NOTICE_INTERVAL = 60.0
NOT_READ = "📕 Some messages here were not read aloud: {reason}"

NarrationChannel = discord.TextChannel | discord.VoiceChannel


class Narration(commands.Cog):
    narrate = app_commands.Group(
        name="narrate",
        description="Read a text channel aloud in voice",
        guild_only=True,
        allowed_contexts=app_commands.AppCommandContext(guild=True),
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: TTSBot) -> None:
        self.bot = bot
        self.narrator = Narrator()
        self._locks: dict[int, asyncio.Lock] = {}
        #: Messages waiting to be read, by message id: their utterance and what it says.
        self._queued: dict[int, Waiting] = {}
        #: The last message queued per server: the one a next message may join.
        self._tail: dict[int, int] = {}
        self._noticed: dict[int, float] = {}

    @narrate.command(name="start", description="Join your voice channel and read a channel aloud")
    @app_commands.describe(
        channel="The text channel, or a voice channel's chat, to read (default: this one)"
    )
    async def start(
        self,
        interaction: discord.Interaction[TTSBot],
        channel: NarrationChannel | None = None,
    ) -> None:
        if not self.bot.intents.message_content:
            raise NarrationDisabledError()
        voice_channel = caller_channel(interaction)
        if voice_channel is None:
            raise NotInVoiceError()
        text_channel = channel or interaction.channel
        if not isinstance(text_channel, NarrationChannel):
            raise BotError(user_message="Pick a text channel to read.")
        assert interaction.guild is not None
        if not text_channel.permissions_for(interaction.guild.me).read_messages:
            raise BotError(user_message=f"I can't read {text_channel.mention}.")
        check_voice_target(self.bot, interaction.user, voice_channel)
        await interaction.response.defer(ephemeral=True, thinking=True)
        _, note = await bring_bot(self.bot, voice_channel)
        guild = await self.bot.services.storage.update_guild(
            interaction.guild.id, narration_channel_id=text_channel.id
        )
        skip = guild.narration_skip_prefix
        hint = f" Messages starting with `{skip}` are skipped." if skip else ""
        who = "members in the voice channel" if guild.narration_voice_only else "everyone"
        warning = f"\n⚠️ {note}" if note else ""
        await interaction.edit_original_response(
            content=(
                f"📖 Reading {text_channel.mention} aloud in {voice_channel.mention} "
                f"for {who}.{hint} Use /narrate stop to end.{warning}"
            ),
            allowed_mentions=NO_MENTIONS,
        )

    @narrate.command(name="stop", description="Stop reading the text channel aloud")
    async def stop(self, interaction: discord.Interaction[TTSBot]) -> None:
        assert interaction.guild is not None
        before = await self.bot.services.storage.get_guild(interaction.guild.id)
        await self.bot.services.storage.update_guild(
            interaction.guild.id, narration_channel_id=None
        )
        message = (
            "📕 Narration stopped."
            if before.narration_channel_id
            else "Narration was not on; nothing to stop."
        )
        await interaction.response.send_message(
            message, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    def _lock(self, guild_id: int) -> asyncio.Lock:
        return self._locks.setdefault(guild_id, asyncio.Lock())

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        guild = message.guild
        if guild is None or message.webhook_id is not None or message.author.bot:
            return
        # Taken before the first await, and asyncio's lock is first come first served: each
        # message is queued in the order it was written, however fast its audio comes.
        async with self._lock(guild.id):
            prepared = await self._prepare(message, AUTO)
            if prepared is None:
                return
            player, utterance, reading, stream = prepared
            own = await self._merge(guild.id, player, message, utterance, reading, stream)
            if own is None:
                return
            utterance, stream = own
            try:
                player.enqueue(utterance)
            except BotError as exc:
                await utterance.close()
                log.info("Not reading message %s: %s", message.id, exc)
                return
            self.narrator.heard(message.channel.id, message.author.id)
            self._queued[message.id] = Waiting.alone(
                utterance, reading, stream, message=message, author=message.author
            )
            self._tail[guild.id] = message.id

    async def _merge(
        self,
        guild_id: int,
        player: GuildPlayer,
        message: discord.Message,
        utterance: Utterance,
        reading: Reading,
        own: SpeechStream,
    ) -> tuple[Utterance, SpeechStream] | None:
        """When narration is behind (the last message queued is still waiting for its call),
        read this message in that call: one call instead of two, order kept, nothing dropped.
        The same member's messages always join; another member's only where the server
        turned on two-speaker merging, and never a third speaker. None once merged;
        otherwise the message's own utterance to queue (begun again if the merged call was
        refused)."""
        alone = (utterance, own)
        tail = self._queued.get(self._tail.get(guild_id, 0))
        if not self.bot.settings.narration_merge or tail is None:
            return alone
        if player.find(tail.merged.parts[0].message_id) is not tail.utterance:
            return alone
        ticket = tail.stream.current
        if ticket is None or ticket.state != "queued" or tail.stream.total != 1:
            return alone  # Already being made (or from the cache): nothing to save.
        author = message.author
        part = Part(message.id, author.id, reading.name, reading.text, reading.prefix)
        merged = tail.merged.with_part(part)
        settings = await self.bot.services.storage.get_guild(guild_id)
        if len(merged.speakers) > (2 if settings.narration_merge_speakers else 1):
            return alone
        voices = await self._voices(merged)
        limit = min(self.bot.services.speech.text_limit(settings), self.bot.settings.chunk_chars)
        if len(merged.text(dialogue=voices is not None)) > limit:
            return alone
        # This message's own call is withdrawn first, so the member's place in the queue is
        # free for the merged one; the waiting call is withdrawn once the merged one is in.
        await utterance.close()
        authors = {**tail.authors, author.id: author}
        if await self._rebuild(guild_id, player, tail, merged, authors, keep=True) is None:
            # Refused together: read it on its own, as before.
            return await self._utterance(guild_id, author, reading, message.id, message.channel)
        self.narrator.heard(message.channel.id, author.id)
        self._tail[guild_id] = message.id
        return None

    async def _voices(self, merged: Merged) -> tuple[str, str] | None:
        """The two voices of a two-speaker call, or None to read it in one voice (one
        speaker, or two members who happen to share a voice: their "X said" tells them
        apart)."""
        if len(merged.speakers) != 2:
            return None
        storage = self.bot.services.storage
        first, second = [member_voice(await storage.get_member(m)) for m in merged.speakers]
        return None if first == second else (first, second)

    async def _rebuild(
        self,
        guild_id: int,
        player: GuildPlayer,
        old: Waiting,
        merged: Merged,
        authors: dict[int, Author],
        *,
        keep: bool = False,
    ) -> Waiting | None:
        """One call reading `merged` in `old`'s place in line; None if the call is refused,
        with `old` kept as it was (`keep`) or withdrawn. The first speaker is its caller."""
        voices = await self._voices(merged)
        first = merged.parts[0]
        reading = Reading(merged.text(dialogue=voices is not None), first.prefix, first.name)
        caller = authors[merged.speakers[0]]
        made = await self._utterance(
            guild_id,
            caller,
            reading,
            first.message_id,
            old.channel,
            voices=voices or (),
            merged=True,
            # /queue shows whose words are coming up: both speakers of a shared call.
            label=" & ".join(authors[m].display_name for m in merged.speakers),
        )
        if made is None:
            if not keep:
                await player.withdraw(old.utterance)
            return None
        utterance, stream = made
        if not await player.replace(old.utterance, utterance):
            await utterance.close()
            return None
        waiting = Waiting(
            utterance,
            reading,
            old.content,
            stream,
            merged,
            old.channel,
            {m: authors[m] for m in merged.speakers},
        )
        for message_id in merged.message_ids:
            self._queued[message_id] = waiting
        log.debug(
            "Narration behind: %d messages of %d members in one call",
            len(merged.parts),
            len(merged.speakers),
        )
        return waiting

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A message deleted before its turn is not read (nor, if still unmade, paid for)."""
        queued = self._queued.get(payload.message_id)
        if queued is None or payload.guild_id is None:
            return
        player = self.bot.playback.player(payload.guild_id)
        if player is None:
            return
        if len(queued.merged.parts) > 1:  # Read with others in one call: read the others.
            async with self._lock(payload.guild_id):
                if player.find(queued.merged.parts[0].message_id) is not queued.utterance:
                    return
                rest = queued.merged.without(payload.message_id)
                self._queued.pop(payload.message_id, None)
                if rest is None:
                    await player.withdraw(queued.utterance)
                else:
                    await self._rebuild(payload.guild_id, player, queued, rest, queued.authors)
            return
        if await player.withdraw(queued.utterance):
            log.debug("Message %s deleted before its turn: withdrawn", payload.message_id)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """A message edited before its turn is read as it is now, in the same place."""
        queued = self._queued.get(payload.message_id)
        if queued is None or payload.guild_id is None:
            return
        async with self._lock(payload.guild_id):
            old, reading = queued.utterance, queued.reading
            player = self.bot.playback.player(payload.guild_id)
            if len(queued.merged.parts) > 1:
                return  # Read with others in one call: read as first written.
            if player is None or player.find(payload.message_id) is not old:
                return  # Already playing or gone: what is said stays said.
            if payload.message.content == queued.content:
                return  # A link preview or a pin, not new words.
            prepared = await self._prepare(payload.message, reading.prefix)
            if prepared is None:  # Now empty, or now skipped: read nothing.
                await player.withdraw(old)
                return
            _, new, new_reading, new_stream = prepared
            if await player.replace(old, new):
                self._queued[payload.message_id] = Waiting.alone(
                    new,
                    new_reading,
                    new_stream,
                    message=payload.message,
                    author=next(iter(queued.authors.values())),
                    channel=queued.channel,
                )
            else:
                await new.close()

    async def _prepare(
        self, message: discord.Message, prefix: str | AutoPrefix | None
    ) -> tuple[GuildPlayer, Utterance, Reading, SpeechStream] | None:
        """What reading `message` takes, with its speech begun; None if it is not read.

        An idle bot joins a member in voice who writes in the narration channel (or in their
        voice channel's own chat) by itself, once the message is found worth reading.
        """
        guild = message.guild
        assert guild is not None
        settings = await self.bot.services.storage.get_guild(guild.id)
        if settings.narration_channel_id is None:
            return None
        author = message.author
        if not isinstance(author, discord.Member):  # An edit's payload may lack the member.
            author = guild.get_member(author.id) or author
        author_channel = _voice_channel_of(author)
        voice_channel = self.bot.playback.connected_channel(guild)
        player = self.bot.playback.player(guild.id)
        idle = voice_channel is None or player is None
        if idle:
            if not isinstance(prefix, AutoPrefix) or author_channel is None:
                return None  # Only a new message from a member in voice brings the bot.
            voice_channel = author_channel
        assert voice_channel is not None
        if message.channel.id not in (settings.narration_channel_id, voice_channel.id):
            return None
        rules = NarrationRules.from_guild(settings, text_limit=self.bot.settings.max_text_length)
        reason = skip_reason(
            message.content,
            author_is_bot=author.bot,
            author_in_voice=author_channel is not None and author_channel == voice_channel,
            rules=rules,
            system=message.type not in READABLE_TYPES,
            silent=message.flags.suppress_notifications,
        )
        if reason is not None:
            log.debug("Not reading message %s: %s", message.id, reason)
            return None
        if idle:
            player = await self._join_by_itself(author, voice_channel)
            if player is None:
                return None
        assert player is not None
        # The name as the member wants it said (/voice name), where they may change their
        # nickname; else as Discord shows it. An author without member data: unknown, so no.
        spoken = (await self.bot.services.storage.get_member(author.id)).spoken_name
        may_rename = isinstance(author, discord.Member) and author.guild_permissions.change_nickname
        reading = self.narrator.compose(
            facts_from_message(message),
            channel_id=message.channel.id,
            author_id=author.id,
            author_name=announced_name(spoken, author.display_name, may_change_nickname=may_rename),
            rules=rules,
            prefix=prefix,
        )
        if not reading.text:
            return None
        made = await self._utterance(guild.id, author, reading, message.id, message.channel)
        if made is None:
            return None
        utterance, stream = made
        return player, utterance, reading, stream

    async def _utterance(
        self,
        guild_id: int,
        author: discord.Member | discord.User,
        reading: Reading,
        message_id: int,
        channel: discord.abc.Messageable,
        *,
        voices: tuple[str, ...] = (),
        merged: bool = False,
        label: str | None = None,
    ) -> tuple[Utterance, SpeechStream] | None:
        """Begin making `reading` for `author`; None (logged) if the pipeline refuses. A
        merged reading is one call (no short first chunk: it is late anyway); `voices` are a
        two-speaker call's."""
        options = SpeakOptions(voice=voices[0], voice_2=voices[1]) if voices else SpeakOptions()
        try:
            stream = await self.bot.services.speech.begin(
                caller_of(author, guild_id),
                reading.text,
                options,
                destination=Destination.NARRATION,
                short_first=not merged,
            )
        except BotError as exc:
            log.info("Not reading message %s: %s", message_id, exc)
            return None
        utterance: Utterance

        def closed() -> None:
            stream.cancel()
            waiting = self._queued.get(message_id)
            if waiting is not None and waiting.utterance is utterance:
                for part_id in waiting.merged.message_ids:
                    self._queued.pop(part_id, None)

        async def notify(line: str) -> None:
            await self._notice(channel, line.removeprefix("⚠️ "))

        utterance = Utterance(
            label=label or author.display_name,
            user_id=author.id,
            clips=self.bot.services.speech.ogg_clips(stream.audio(), stream.requests[0]),
            on_close=closed,
            notify=notify,
            seconds=estimate_seconds(reading.text),
            source_id=message_id,
        )
        return utterance, stream

    async def _join_by_itself(
        self, author: discord.Member | discord.User, channel: VoiceTarget
    ) -> GuildPlayer | None:
        """Join `channel` for a member who wrote in the narration channel; None (logged) where
        the bot may not or cannot go. It leaves as after any join, when the channel empties."""
        try:
            check_voice_target(self.bot, author, channel)
            player, note = await bring_bot(self.bot, channel)
        except BotError as exc:
            log.info("Not joining %s by itself: %s", channel.id, exc.user_message)
            return None
        log.info("Joined voice channel %s by itself for %s", channel.id, author.id)
        if note:
            log.info("After joining %s: %s", channel.id, note)
        return player

    async def _notice(self, channel: discord.abc.Messageable, reason: str) -> None:
        """Tell the channel, once a minute at most, that some messages were not read."""
        key = getattr(channel, "id", 0)
        now = asyncio.get_running_loop().time()
        if now - self._noticed.get(key, -NOTICE_INTERVAL) < NOTICE_INTERVAL:
            return
        self._noticed[key] = now
        await channel.send(NOT_READ.format(reason=reason), allowed_mentions=NO_MENTIONS)


def _voice_channel_of(author: discord.Member | discord.User) -> VoiceTarget | None:
    """The voice channel (or Stage) the author is in, if any."""
    if isinstance(author, discord.Member) and author.voice is not None:
        channel = author.voice.channel
        if isinstance(channel, discord.VoiceChannel | discord.StageChannel):
            return channel
    return None


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(Narration(bot))
