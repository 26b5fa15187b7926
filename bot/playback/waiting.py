"""Calls already waiting: a new message joining the one at the tail when narration is behind,
an edit or a delete before a message's turn, and messages too old to be worth reading. The
middle of `bot.playback.narration.NarrationReader` (split for size, one face)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import discord

from bot.errors import BotError
from bot.locales import line
from bot.playback.calls import Incoming, NarrationCalls, Read
from bot.playback.player import GuildPlayer
from bot.playback.rooms import Author, GuildNarration, Waiting
from bot.speech.merging import JoinWaiting, Merged, Part, decide_merge, dialogue_voices
from bot.speech.narration import NarrationRules, Reading, member_voice
from bot.storage import GuildSettings

__all__ = ["STALE", "SWEEP_INTERVAL", "WaitingCalls"]

log = logging.getLogger(__name__)

#: The catalogue's key for a channel's "skipped, too late" notice.
STALE = "narration.stale"
#: Stale messages are looked for at most this often per server, so skips come in one line.
SWEEP_INTERVAL = 15.0
#: An edited message in a merged call is read from its start if at least this much fits.
_FEWEST_WORDS = 20


class WaitingCalls(NarrationCalls):
    """Merging, edits, deletes and staleness, on top of making calls."""

    # -- merging ---------------------------------------------------------------------------

    async def _join_waiting(
        self,
        room: GuildNarration,
        player: GuildPlayer,
        incoming: Incoming,
        read: Read,
        settings: GuildSettings,
    ) -> bool:
        """When narration is behind, read this message in the call waiting at the tail: one
        call instead of two, order kept, nothing dropped. True once merged."""
        tail = room.tail_waiting()
        if tail is not None and not tail.waiting_in(player):
            tail = None
        author, reading = incoming.author, read.reading
        part = Part(incoming.message_id, author.id, reading.name, reading.text, reading.prefix)
        voices = {**(tail.voices if tail else {}), author.id: member_voice(read.member)}
        decision = decide_merge(
            tail.merged if tail is not None else None,
            part,
            enabled=self.merge,
            unmade=tail is not None and tail.unmade() and tail.stream.total == 1,
            two_speakers=settings.narration_merge_speakers,
            voices=voices,
            limit=min(read.rules.text_limit, self.chunk_chars),
        )
        if not isinstance(decision, JoinWaiting):
            return False
        assert tail is not None
        authors = {**tail.authors, author.id: author}
        contents = {**tail.contents, incoming.message_id: incoming.content}
        rebuilt = await self._rebuild(
            room, player, tail, decision.merged, authors, voices, contents, settings
        )
        if rebuilt is None:
            return False  # Refused together: read it on its own, as before.
        self.narrator.heard(incoming.channel_id, author.id)
        return True

    async def _rebuild(
        self,
        room: GuildNarration,
        player: GuildPlayer,
        old: Waiting,
        merged: Merged,
        authors: dict[int, Author],
        voices: dict[int, str],
        contents: dict[int, str],
        settings: GuildSettings,
    ) -> Waiting | None:
        """One call reading `merged` in `old`'s place in line; None (and `old` kept as it
        was) if the call is refused. The first speaker is its caller."""
        pair = dialogue_voices(merged, voices)
        first = merged.parts[0]
        reading = Reading(merged.text(dialogue=pair is not None), first.prefix, first.name)
        caller = authors[merged.speakers[0]]
        member = await self.storage.get_member(caller.id)
        rules = NarrationRules.from_guild(settings, text_limit=self.speech.text_limit(settings))
        try:
            admission = await self._admit(
                settings.guild_id,
                caller,
                Read(reading, member, rules),
                settings,
                voices=pair,
                merged=True,
            )
        except BotError as exc:
            log.info("Not merging into message %s: %s", first.message_id, exc)
            return None
        made = await self._start(
            room,
            admission,
            caller,
            reading,
            old.channel,
            first.message_id,
            # /queue shows whose words are coming up: both speakers of a shared call.
            label=" & ".join(authors[m].display_name for m in merged.speakers),
            later=player.held,
        )
        if made is None:
            return None
        utterance, stream = made
        if not await player.replace(old.utterance, utterance):
            await utterance.close()
            return None
        speakers = merged.speakers
        waiting = Waiting(
            utterance,
            reading,
            stream,
            merged,
            old.channel,
            {m: authors[m] for m in speakers},
            {m: voices[m] for m in speakers},
            {i: contents[i] for i in merged.message_ids if i in contents},
            old.queued_at,
        )
        room.drop(old)
        room.add(waiting)
        log.debug(
            "Narration behind: %d messages of %d members in one call",
            len(merged.parts),
            len(speakers),
        )
        return waiting

    async def _remove(
        self,
        room: GuildNarration,
        player: GuildPlayer,
        waiting: Waiting,
        message_id: int,
        guild_id: int,
    ) -> None:
        """Take one message out of its waiting call: the others of a merged call are still
        read (one voice again if one speaker is left), a call of its own is withdrawn."""
        rest = waiting.merged.without(message_id)
        room.waiting.pop(message_id, None)
        if rest is None:
            await player.withdraw(waiting.utterance)
            return
        settings = await self.storage.get_guild(guild_id)
        rebuilt = await self._rebuild(
            room, player, waiting, rest, waiting.authors, waiting.voices, waiting.contents, settings
        )
        if rebuilt is None:  # The others could not be made again: read none of it.
            await player.withdraw(waiting.utterance)

    # -- edits -----------------------------------------------------------------------------

    async def _edit(self, room: GuildNarration, incoming: Incoming) -> None:
        message_id = incoming.message_id
        waiting = room.waiting.get(message_id)
        player = self.voices.player(incoming.guild.id)
        if waiting is None or player is None or not waiting.waiting_in(player):
            return  # Already playing or gone: what is said stays said.
        if incoming.content == waiting.contents.get(message_id):
            return  # A link preview or a pin, not new words.
        part = waiting.merged.part(message_id)
        voice_channel = self.voices.connected_channel(incoming.guild)
        assert part is not None
        settings = await self.storage.get_guild(incoming.guild.id)
        read = None
        if voice_channel is not None:
            read = await self._compose(incoming, settings, voice_channel, part.prefix)
        if read is None:  # Now empty, or now skipped: read nothing of it.
            await self._remove(room, player, waiting, message_id, incoming.guild.id)
            return
        contents = {**waiting.contents, message_id: incoming.content}
        if len(waiting.merged.parts) == 1:
            await self._replace_alone(room, player, waiting, incoming, read, settings, contents)
            return
        merged = self._fit(waiting, incoming, read)
        if merged is None:
            log.info("Edited message %s no longer fits its call: read as first written", message_id)
            return
        await self._rebuild(
            room,
            player,
            waiting,
            merged,
            {**waiting.authors, incoming.author.id: incoming.author},
            waiting.voices,
            contents,
            settings,
        )

    async def _replace_alone(
        self,
        room: GuildNarration,
        player: GuildPlayer,
        waiting: Waiting,
        incoming: Incoming,
        read: Read,
        settings: GuildSettings,
        contents: dict[int, str],
    ) -> None:
        try:
            admission = await self._admit(incoming.guild.id, incoming.author, read, settings)
        except BotError as exc:
            log.info("Not reading edited message %s: %s", incoming.message_id, exc)
            await player.withdraw(waiting.utterance)
            return
        made = await self._start(
            room,
            admission,
            incoming.author,
            read.reading,
            waiting.channel,
            incoming.message_id,
            later=player.held,
        )
        if made is None:
            await player.withdraw(waiting.utterance)
            return
        utterance, stream = made
        if not await player.replace(waiting.utterance, utterance):
            await utterance.close()
            return
        room.drop(waiting)
        room.add(
            replace(
                waiting,
                utterance=utterance,
                reading=read.reading,
                stream=stream,
                merged=Merged((replace(waiting.merged.parts[0], text=read.reading.text),)),
                contents=contents,
            )
        )

    def _fit(self, waiting: Waiting, incoming: Incoming, read: Read) -> Merged | None:
        """The merged call with one message's words as edited, the edit read from its start
        ("… and more", like any long message) so the whole call still fits one request;
        None if not even a few of its words would."""
        message_id = incoming.message_id
        limit = min(read.rules.text_limit, self.chunk_chars)
        dialogue = dialogue_voices(waiting.merged, waiting.voices) is not None
        merged = waiting.merged.with_text(message_id, read.reading.text)
        over = len(merged.text(dialogue=dialogue)) - limit
        if over <= 0:
            return merged
        room = len(read.reading.text) - over
        if room < _FEWEST_WORDS:
            return None
        reading = self.narrator.compose(
            incoming.facts,
            channel_id=incoming.channel_id,
            author_id=incoming.author.id,
            author_name=read.reading.name,
            rules=replace(read.rules, text_limit=room),
            prefix=read.reading.prefix,
        )
        return waiting.merged.with_text(message_id, reading.text) if reading.text else None

    # -- stale messages and notices ----------------------------------------------------------

    def _arm(
        self, room: GuildNarration, guild_id: int, bound: int, *, soonest: float = 0.0
    ) -> None:
        """Look for stale messages when the oldest waiting one passes the server's bound (0:
        never), and no sooner than `soonest` s from now."""
        if bound <= 0 or room.sweep is not None or not room.waiting:
            return
        oldest = min(waiting.queued_at for waiting in room.waiting.values())
        delay = max(oldest + bound - self._now(), soonest, 0.01) / self.clock_rate
        loop = asyncio.get_running_loop()

        def fire() -> None:
            room.sweep = None
            task = loop.create_task(self._sweep(room, guild_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        room.sweep = loop.call_later(delay, fire)

    async def _sweep(self, room: GuildNarration, guild_id: int) -> None:
        """Withdraw every waiting call older than the server's bound that nothing has been
        paid for yet, and tell each channel once, in one line, how many were skipped. A
        call already made, or being made, is read, late as it is: it is paid for."""
        try:
            async with room.lock:
                settings = await self.storage.get_guild(guild_id)
                bound = settings.narration_stale_after
                player, now = self.voices.player(guild_id), self._now()
                skipped: dict[int, tuple[discord.abc.Messageable, int]] = {}
                for waiting in room.calls():
                    if bound <= 0 or waiting.queued_at + bound > now:
                        break
                    if player is None or not waiting.waiting_in(player) or not waiting.unmade():
                        continue
                    await player.withdraw(waiting.utterance)
                    room.drop(waiting)
                    key = getattr(waiting.channel, "id", 0)
                    _, count = skipped.get(key, (waiting.channel, 0))
                    skipped[key] = (waiting.channel, count + len(waiting.merged.parts))
                for channel, count in skipped.values():
                    self.stale_skipped += count
                    log.info("Skipped %d stale narration messages in guild %s", count, guild_id)
                    notice = line(STALE, count=_messages(count), bound=_duration(bound))
                    await self._notice(room, channel, "stale", notice, interval=SWEEP_INTERVAL)
                # A steady backlog is told in one line per interval, not one per message.
                self._arm(room, guild_id, bound, soonest=SWEEP_INTERVAL)
        except Exception:
            log.exception("Could not look for stale narration messages in guild %s", guild_id)


def _messages(count: int) -> str:
    return line("narration.messages_one" if count == 1 else "narration.messages_many", count=count)


def _duration(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    if rest == 0:
        return line("speak.minutes_one" if minutes == 1 else "speak.minutes_many", count=minutes)
    return line("speak.seconds_many", count=seconds)
