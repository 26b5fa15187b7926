"""What narration remembers of each message waiting to be read, apart from the cog's logic."""

from __future__ import annotations

from dataclasses import dataclass

import discord

from bot.playback.player import Utterance
from bot.speech.merging import Merged, Part
from bot.speech.narration import Reading
from bot.synthesis.stream import SpeechStream

__all__ = ["Author", "Waiting"]

Author = discord.Member | discord.User


@dataclass(frozen=True, slots=True, eq=False)
class Waiting:
    """A message queued to be read: its utterance, what it says, and the content it came
    from (an edit that changes no words, such as a link preview, changes nothing).

    When narration is behind, several waiting messages share one call (`bot.speech.merging`):
    `merged` holds them in order, and `authors` the members who wrote them; every message
    of the call maps to the same `Waiting`.
    """

    utterance: Utterance
    reading: Reading
    content: str
    stream: SpeechStream
    merged: Merged
    channel: discord.abc.Messageable
    authors: dict[int, Author]

    @classmethod
    def alone(
        cls,
        utterance: Utterance,
        reading: Reading,
        stream: SpeechStream,
        *,
        message: discord.Message,
        author: Author,
        channel: discord.abc.Messageable | None = None,
    ) -> Waiting:
        """One message read in a call of its own."""
        part = Part(message.id, author.id, reading.name, reading.text, reading.prefix)
        return cls(
            utterance,
            reading,
            message.content,
            stream,
            Merged((part,)),
            channel or message.channel,
            {author.id: author},
        )
