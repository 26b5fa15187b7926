"""Reading a text channel aloud: the decisions behind narration, below the cog.

The cog turns each Discord event into one call here (`read`, `edit`, `delete`); this module
decides, with every server rule checked before the bot moves or anything is spent: which
messages are read, whether an idle bot joins the member who wrote, whether a message joins the
call waiting at the tail when narration is behind (`bot.speech.merging`), and which waiting
messages are too old to be worth reading any more. Each server's state is one
`GuildNarration` (`bot.playback.rooms`); settings are read once per message and passed down.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from bot.errors import BotError
from bot.locales import line
from bot.playback.calls import NOT_READ, Incoming, Read
from bot.playback.connections import VoiceTarget
from bot.playback.player import GuildPlayer
from bot.playback.presence import bring_bot, check_voice_target, voice_channel_of
from bot.playback.rooms import Author, GuildNarration, Waiting
from bot.playback.waiting import STALE, WaitingCalls
from bot.speech.narration import AUTO, member_voice
from bot.synthesis.service import Admission

__all__ = ["NOT_READ", "STALE", "Incoming", "NarrationReader"]

log = logging.getLogger(__name__)


class NarrationReader(WaitingCalls):
    """Narration for every server: one `GuildNarration` each, events handled in order."""

    # -- events ---------------------------------------------------------------------------

    async def read(self, incoming: Incoming) -> None:
        """A new message: read it if every rule allows, joining its author if idle."""
        room = self.rooms.get(incoming.guild.id)
        # Taken before the first await, and asyncio's lock is first come first served.
        async with room.lock:
            await self._guarded(incoming, self._read(room, incoming))

    async def edit(self, incoming: Incoming) -> None:
        """A message edited before its turn is read as it is now, in the same place, merged
        with others or not; an edit that leaves nothing to read withdraws it."""
        room = self.rooms.find(incoming.guild.id)
        if room is None or incoming.message_id not in room.waiting:
            return
        async with room.lock:
            await self._guarded(incoming, self._edit(room, incoming))

    async def delete(self, guild_id: int, message_id: int) -> None:
        """A message deleted before its turn is not read (nor, if still unmade, paid for)."""
        room = self.rooms.find(guild_id)
        if room is None or message_id not in room.waiting:
            return
        async with room.lock:
            waiting = room.waiting.get(message_id)
            player = self.voices.player(guild_id)
            if waiting is None or player is None:
                return
            if len(waiting.merged.parts) == 1:  # The player withdraws it if not yet playing.
                if await player.withdraw(waiting.utterance):
                    log.debug("Message %s deleted before its turn: withdrawn", message_id)
                return
            if waiting.waiting_in(player):  # Read with others in one call: read the others.
                await self._remove(room, player, waiting, message_id, guild_id)

    async def _guarded(self, incoming: Incoming, work: object) -> None:
        """Run `work`; an unexpected error is logged with a reference, reported in the channel
        like other failures and passed to the operator's alert, never swallowed (a message
        silently not read is a member's words lost)."""
        assert asyncio.iscoroutine(work)
        try:
            await work
        except Exception as error:
            ref = secrets.token_hex(3)
            log.exception(
                "Unexpected error ref=%s reading message %s (guild %s)",
                ref,
                incoming.message_id,
                incoming.guild.id,
            )
            if self.on_unexpected is not None:
                self.on_unexpected("narration", ref, error)
            await self._notice(
                self.rooms.get(incoming.guild.id),
                incoming.channel,
                "not_read",
                line(NOT_READ, reason=line("narration.unexpected", ref=ref)),
            )

    def backlog(self) -> tuple[int, float]:
        """For the metrics: messages waiting to be read aloud in every server (not yet
        playing), and seconds the oldest of them has waited (0: none waits)."""
        count, oldest = 0, None
        for guild_id, room in self.rooms.items():
            player = self.voices.player(guild_id)
            for waiting in room.calls():
                if waiting.waiting_in(player):
                    count += len(waiting.merged.parts)
                    oldest = waiting.queued_at if oldest is None else min(oldest, waiting.queued_at)
        return count, 0.0 if oldest is None else max(0.0, self._now() - oldest)

    # -- reading ---------------------------------------------------------------------------

    async def _read(self, room: GuildNarration, incoming: Incoming) -> None:
        guild = incoming.guild
        settings = await self.storage.get_guild(guild.id)
        if settings.narration_channel_id is None:
            return
        author = incoming.author
        author_channel = voice_channel_of(author)
        voice_channel = self.voices.connected_channel(guild)
        player = self.voices.player(guild.id)
        idle = voice_channel is None or player is None
        if idle:
            if author_channel is None:
                return  # Only a member in voice brings the bot.
            voice_channel = author_channel
        assert voice_channel is not None
        if incoming.channel_id not in (settings.narration_channel_id, voice_channel.id):
            return
        read = await self._compose(incoming, settings, voice_channel, AUTO)
        if read is None:
            return
        try:
            if idle:
                # Free checks first, and every rule of the pipeline (admitted below), before
                # the bot moves: a refused member never brings it into their channel.
                check_voice_target(self.voices, author, voice_channel)
            admission = await self._admit(incoming.guild.id, author, read, settings)
        except BotError as exc:
            log.info("Not reading message %s: %s", incoming.message_id, exc)
            return
        if idle:
            player = await self._join(author, voice_channel, admission)
            if player is None:
                return
        assert player is not None
        if await self._join_waiting(room, player, incoming, read, settings):
            admission.release()
            return
        await self._queue(room, player, incoming, read, admission)

    async def _join(
        self, author: Author, channel: VoiceTarget, admission: Admission
    ) -> GuildPlayer | None:
        """Join `channel` for a member who wrote in the narration channel; None (logged, the
        admitted calls given back) where the bot cannot go. It leaves as after any join,
        when the channel empties."""
        try:
            player, note = await bring_bot(self.voices, channel)
        except BotError as exc:
            admission.release()
            log.info("Not joining %s by itself: %s", channel.id, exc.user_message)
            return None
        except BaseException:
            admission.release()
            raise
        log.info("Joined voice channel %s by itself for %s", channel.id, author.id)
        if note:
            log.info("After joining %s: %s", channel.id, note)
        return player

    async def _queue(
        self,
        room: GuildNarration,
        player: GuildPlayer,
        incoming: Incoming,
        read: Read,
        admission: Admission,
    ) -> None:
        """Spend what was admitted and queue the message in a call of its own."""
        made = await self._start(
            room,
            admission,
            incoming.author,
            read.reading,
            incoming.channel,
            incoming.message_id,
            later=player.held,
        )
        if made is None:
            return
        utterance, stream = made
        try:
            player.enqueue(utterance)
        except BotError as exc:
            await utterance.close()
            log.info("Not reading message %s: %s", incoming.message_id, exc)
            return
        self.narrator.heard(incoming.channel_id, incoming.author.id)
        room.add(
            Waiting.alone(
                utterance,
                read.reading,
                stream,
                message_id=incoming.message_id,
                content=incoming.content,
                author=incoming.author,
                voice=member_voice(read.member),
                channel=incoming.channel,
                queued_at=self._now(),
            )
        )
        self._arm(room, incoming.guild.id, read.rules.stale_after)

    async def close(self) -> None:
        """Shutdown: no sweep outlives the reader."""
        for room in self.rooms:
            if room.sweep is not None:
                room.sweep.cancel()
                room.sweep = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
