"""Narration's state, one object per server: what waits to be read, what a next message may
join, and when the channel was last told something. Kept apart from the reading logic
(`bot.playback.narration`) so the cog holds no state and each server's state can be read
whole, in one place."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import discord

from bot.playback.player import GuildPlayer, Utterance
from bot.speech.merging import Merged, Part
from bot.speech.narration import Reading
from bot.synthesis.stream import SpeechStream

__all__ = ["Author", "GuildNarration", "NarrationRooms", "Waiting"]

Author = discord.Member | discord.User


@dataclass(frozen=True, slots=True, eq=False)
class Waiting:
    """One call waiting to be read: its utterance and stream, and the messages it reads.

    When narration is behind, several waiting messages share one call (`bot.speech.merging`):
    `merged` holds them in order, `authors` the members who wrote them and `voices` each
    one's voice; every message of the call maps to the same `Waiting`. `contents` keeps each
    message's words as written, so an edit that changes no words (a link preview, a pin)
    changes nothing.
    """

    utterance: Utterance
    reading: Reading
    stream: SpeechStream
    merged: Merged
    channel: discord.abc.Messageable
    authors: dict[int, Author]
    voices: dict[int, str]
    contents: dict[int, str]
    #: Event-loop time the oldest of its messages was queued: how stale the call is.
    queued_at: float

    @classmethod
    def alone(
        cls,
        utterance: Utterance,
        reading: Reading,
        stream: SpeechStream,
        *,
        message_id: int,
        content: str,
        author: Author,
        voice: str,
        channel: discord.abc.Messageable,
        queued_at: float,
    ) -> Waiting:
        """One message read in a call of its own."""
        part = Part(message_id, author.id, reading.name, reading.text, reading.prefix)
        return cls(
            utterance,
            reading,
            stream,
            Merged((part,)),
            channel,
            {author.id: author},
            {author.id: voice},
            {message_id: content},
            queued_at,
        )

    @property
    def first_id(self) -> int:
        """The message the call is filed under in the player (its first)."""
        return self.merged.parts[0].message_id

    def unmade(self) -> bool:
        """The call awaited next has not been started (nor come from the cache): withdrawing
        it throws away nothing paid for, and a next message may still join it. A stream not
        yet started at all (held for a Stage's invitation) is unmade too."""
        if not self.stream.started:
            return not self.stream.closed
        ticket = self.stream.current
        return ticket is not None and ticket.state == "queued"

    def waiting_in(self, player: GuildPlayer | None) -> bool:
        """Still in `player`'s queue, not yet playing (what is said stays said)."""
        return player is not None and player.find(self.first_id) is self.utterance


@dataclass(eq=False)
class GuildNarration:
    """One server's narration: messages are handled one at a time under `lock` (first come,
    first served, so each is queued in the order it was written however fast its audio
    comes), `waiting` maps every waiting message to its call, `tail` is the message last
    queued (the only call a next message may join: merging never reorders)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: dict[int, Waiting] = field(default_factory=dict)
    tail: int | None = None
    #: When each channel was last told something, by kind of notice (event-loop time).
    noticed: dict[tuple[int, str], float] = field(default_factory=dict)
    #: The pending sweep for stale messages, if one is armed.
    sweep: asyncio.TimerHandle | None = None

    def add(self, waiting: Waiting) -> None:
        for message_id in waiting.merged.message_ids:
            self.waiting[message_id] = waiting
        self.tail = waiting.merged.message_ids[-1]

    def drop(self, waiting: Waiting) -> None:
        """Forget a call (played, withdrawn or replaced): only entries still pointing to it."""
        for message_id in waiting.merged.message_ids:
            if self.waiting.get(message_id) is waiting:
                del self.waiting[message_id]

    def tail_waiting(self) -> Waiting | None:
        return self.waiting.get(self.tail) if self.tail is not None else None

    def calls(self) -> list[Waiting]:
        """Each waiting call once, oldest first."""
        return sorted({id(w): w for w in self.waiting.values()}.values(), key=_age)

    def may_notice(self, channel_id: int, kind: str, now: float, interval: float) -> bool:
        """Whether a notice of `kind` may go to the channel now (at most one per interval),
        remembering it if so."""
        key = (channel_id, kind)
        if now - self.noticed.get(key, -interval) < interval:
            return False
        self.noticed[key] = now
        return True


def _age(waiting: Waiting) -> float:
    return waiting.queued_at


class NarrationRooms:
    """Every server's narration state, made on first use (one small object per server that
    has narrated since the bot started)."""

    def __init__(self) -> None:
        self._rooms: dict[int, GuildNarration] = {}

    def get(self, guild_id: int) -> GuildNarration:
        room = self._rooms.get(guild_id)
        if room is None:
            room = self._rooms[guild_id] = GuildNarration()
        return room

    def find(self, guild_id: int) -> GuildNarration | None:
        return self._rooms.get(guild_id)

    def __len__(self) -> int:
        return len(self._rooms)

    def items(self) -> list[tuple[int, GuildNarration]]:
        """Each server's id and state (a copy: safe while rooms are added)."""
        return list(self._rooms.items())

    def __iter__(self) -> Iterator[GuildNarration]:
        return iter(list(self._rooms.values()))
