"""What a /speak answer says while its speech is made and once it is heard: the live place in
the queue, the voices and length, where it plays (private helpers for `cogs.speak`)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import discord

from bot.locales import text
from bot.playback.connections import VoiceTarget
from bot.speech.request import SpeechRequest
from bot.synthesis.scheduler import Ticket
from bot.synthesis.stream import SpeechStream
from bot.tree import NO_MENTIONS, locale_of
from cogs._shared import say

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = [
    "PROGRESS_EDIT_INTERVAL",
    "ProgressReporter",
    "playing_line",
    "progress_line",
    "result_line",
]

log = logging.getLogger(__name__)

#: Discord allows 5 edits per 5 s per message; a queue position does not need more than this.
PROGRESS_EDIT_INTERVAL = 2.0


def progress_line(
    ticket: Ticket | None,
    *,
    part: tuple[int, int] = (1, 1),
    now: float | None = None,
    locale: str | None = None,
) -> str:
    """What a waiting member sees, in their language; the Discord timestamp counts down by
    itself."""
    ready = ""
    if ticket is not None and ticket.eta is not None:
        moment = int((now if now is not None else time.time()) + ticket.eta)
        ready = text("speak.ready", locale, when=f"<t:{moment}:R>")
    of = text("speak.part", locale, index=part[0], total=part[1]) if part[1] > 1 else ""
    if ticket is not None and ticket.state == "queued" and ticket.position:
        return text("speak.queued", locale, part=of, position=ticket.position, ready=ready)
    return text("speak.making", locale, part=of, ready=ready)


def result_line(request: SpeechRequest, duration: float | None, source: str | None = None) -> str:
    """Voices and length; the length is left out while it is not known yet."""
    voices = f"**{request.voice}**" + (f" & **{request.voice_2}**" if request.voice_2 else "")
    prefix = f"{source} · " if source else ""
    length = f" · {duration:.1f} s" if duration is not None else ""
    return f"🔊 {prefix}{voices}{length}"


def playing_line(
    interaction: discord.Interaction[TTSBot], channel: VoiceTarget, place: int, details: str
) -> str:
    """ "Playing in #voice" for the member, with their place in line when others are ahead."""
    if place > 1:
        return say(
            interaction,
            "speak.playing_in_line",
            channel=channel.mention,
            place=place,
            details=details,
        )
    return say(interaction, "speak.playing", channel=channel.mention, details=details)


class ProgressReporter:
    """Edits the placeholder as the message's chunks move through the queue, at most every
    PROGRESS_EDIT_INTERVAL seconds."""

    def __init__(self, interaction: discord.Interaction[TTSBot], stream: SpeechStream) -> None:
        self._interaction = interaction
        self._stream = stream
        self._changed = asyncio.Event()
        self._watched: set[int] = set()
        self._last = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stream.add_listener(lambda _: self._changed.set())
        self._changed.set()
        self._task = asyncio.create_task(self._run(), name="speak-progress")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while self._stream.index < self._stream.total and not self._stream.closed:
            await self._changed.wait()
            self._changed.clear()
            ticket = self._stream.current
            if ticket is not None and ticket.id not in self._watched:
                self._watched.add(ticket.id)
                ticket.add_listener(lambda _: self._changed.set())
            part = (min(self._stream.index + 1, self._stream.total), self._stream.total)
            line = progress_line(ticket, part=part, locale=locale_of(self._interaction))
            if line != self._last:
                self._last = line
                try:
                    await self._interaction.edit_original_response(
                        content=line, allowed_mentions=NO_MENTIONS
                    )
                except discord.HTTPException as exc:
                    log.debug("Progress edit failed: %s", exc)
            await asyncio.sleep(PROGRESS_EDIT_INTERVAL)
