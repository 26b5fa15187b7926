"""On a Stage the bot is heard only as a speaker, so until then its player holds everything.

Without Mute Members the bot joins a Stage in the audience (suppressed) and raises its hand;
whatever it plays then reaches nobody, and speech made for it is paid for and lost. So while
the bot's own voice state is suppressed the player plays nothing and starts nothing: messages
already made are kept, and a message accepted then is not even made (its calls are queued only
once the bot may be heard, `Utterance.start`). A moderator's invitation (VOICE_STATE_UPDATE
with suppress false) releases them, and each plays from its start.

Nobody may ever invite it, so each message waits in the audience for at most `wait` seconds;
then its member is told and its calls not yet made are withdrawn. Why 5 minutes by default
(VOICE_STAGE_WAIT): a moderator watching the Stage sees a raised hand within a minute or two,
and past a few minutes nobody is watching. And a /speak member is told through the command's
interaction token, valid 15 minutes from the command: the setting is capped at 10 so there is
time left, once invited, to make the speech and to say so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import discord

from bot.locales import line

if TYPE_CHECKING:
    from bot.playback.utterance import Utterance

__all__ = ["STAGE_WAIT", "StageGate", "in_audience", "wait_over_line", "waiting_time"]

#: Seconds a message waits for a Stage moderator's invitation by default.
STAGE_WAIT = 300.0


def in_audience(voice: discord.VoiceState | None) -> bool:
    """Whether a voice state is a Stage's audience: there, but not heard. Suppression in a
    plain voice channel (an AFK channel) is not the Stage's and is left alone."""
    return (
        voice is not None
        and isinstance(voice.channel, discord.StageChannel)
        and voice.suppress is True
    )


def wait_over_line(wait: float) -> str:
    """What a member is told when no moderator invited the bot in time."""
    return line("playback.stage_wait_over", wait=waiting_time(wait))


def waiting_time(seconds: float) -> str:
    """A wait as a member reads it: "5 minutes", "90 seconds"."""
    whole = round(seconds)
    minutes, rest = divmod(whole, 60)
    if rest == 0 and minutes:
        return line("speak.minutes_one" if minutes == 1 else "speak.minutes_many", count=minutes)
    return line("speak.seconds_one" if whole == 1 else "speak.seconds_many", count=whole)


class StageGate:
    """Whether the player may be heard, and how long each message has waited to be.

    Each held message carries the moment it started waiting (`Utterance.held_since`): when
    the bot went to the audience, or when it was queued there; a message put in another's
    place (an edit, a merge) keeps its predecessor's, so a busy channel cannot wait forever.
    """

    def __init__(self, wait: float = STAGE_WAIT) -> None:
        self.wait = wait
        self._held = False
        self._wake = asyncio.Event()

    @property
    def held(self) -> bool:
        return self._held

    def hold(self, waiting: Iterable[Utterance], now: float) -> bool:
        """The bot went to the audience at `now`; True if it was heard until then."""
        if self._held:
            return False
        self._held = True
        for utterance in waiting:
            utterance.held_since = now
        return True

    def release(self, waiting: Iterable[Utterance]) -> bool:
        """The bot is heard again; True if it was held until then."""
        if not self._held:
            return False
        self._held = False
        for utterance in waiting:
            utterance.held_since = None
        self._wake.set()
        return True

    def poke(self) -> None:
        """What waits changed (a skip, a stop): the waiter looks again now."""
        self._wake.set()

    def mark(self, utterance: Utterance, now: float) -> None:
        """`utterance` was queued at `now`: while held, its wait starts then."""
        if self.held and utterance.held_since is None:
            utterance.held_since = now

    def over(self, utterance: Utterance, now: float) -> bool:
        """Whether `utterance` has waited in the audience for as long as it may."""
        since = utterance.held_since
        return self.held and since is not None and since + self.wait <= now

    async def heard(self, waiting: Sequence[Utterance]) -> bool:
        """True once the bot may be heard. False when the first of `waiting` has waited as
        long as it may (the caller gives it up), or on a `poke` (the caller looks again)."""
        if not self._held:
            return True
        loop = asyncio.get_running_loop()
        since = [u.held_since for u in waiting if u.held_since is not None]
        deadline = (min(since) if since else loop.time()) + self.wait
        self._wake.clear()
        try:
            async with asyncio.timeout_at(deadline):
                await self._wake.wait()
        except TimeoutError:
            return False
        return not self._held
