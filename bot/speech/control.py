"""Who may steer the bot in voice: the people listening, not whoever types a command.

A session belongs to the members in the bot's voice channel. The author of the message
being spoken may always skip it; members listening may skip, stop or send the bot away; and
the bot is not pulled from a channel where others listen (by /leave, /join or
`/speak play:true` from elsewhere). Move Members, Discord's own right to move people around
voice, overrides all of it. Refusals are free and say who can do it instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.locales import line

__all__ = ["Action", "Seat", "control_refusal", "estimate_seconds", "queue_line"]

#: Speech runs at about this many characters a second (Gemini voices, ordinary prose).
CHARACTERS_PER_SECOND = 14.0


class Action(StrEnum):
    SKIP = "skip"
    STOP = "stop"
    LEAVE = "leave"
    #: Take the bot from its channel into another one.
    MOVE = "move"


@dataclass(frozen=True, slots=True)
class Seat:
    """Where the member asking stands relative to the bot's session."""

    #: In the bot's voice channel (listening).
    listening: bool
    #: Has Move Members in the bot's channel: Discord lets them move anyone anyway.
    moves_members: bool = False
    #: Wrote the message being spoken now.
    author: bool = False
    #: Humans in the bot's channel other than the member asking.
    others_listening: int = 0


def control_refusal(action: Action, seat: Seat, channel: str) -> str | None:
    """Why `seat` may not do `action` to the session in `channel`, or None if they may."""
    if seat.moves_members:
        return None
    if action is Action.SKIP and (seat.author or seat.listening):
        return None
    if action is Action.STOP and seat.listening:
        return None
    if action is Action.LEAVE and (seat.listening or seat.others_listening == 0):
        return None
    if action is Action.MOVE and seat.others_listening == 0:
        return None
    count = seat.others_listening
    many = "one" if count == 1 else "many"
    if action is Action.SKIP:
        return line("control.skip", channel=channel)
    if action is Action.STOP:
        return line("control.stop", channel=channel)
    if action is Action.LEAVE:
        return line(f"control.leave_{many}", count=count, channel=channel)
    return line(f"control.move_{many}", count=count, channel=channel)


def estimate_seconds(text: str) -> float:
    """Roughly how long `text` takes to say, for /queue (never shown as exact)."""
    return max(1.0, len(text) / CHARACTERS_PER_SECOND)


def queue_line(who: str, seconds: float | None) -> str:
    """One entry of /queue: who asked and about how long; never what they wrote, which may
    come from a channel other listeners cannot read."""
    if seconds is None:
        return who
    if seconds < 90:
        return line("playback.queue_seconds", who=who, seconds=round(seconds))
    return line("playback.queue_minutes", who=who, minutes=f"{seconds / 60:.0f}")
