"""Where members and the bot are in voice, and bringing the bot to them: the Discord-to-core
translations every cog that moves the bot needs, in one place below the cogs so no extension
imports another (one broken extension must not take a second down)."""

from __future__ import annotations

import discord

from bot.errors import AccessDeniedError
from bot.playback.connections import VoiceManager, VoiceTarget, check_joinable, humans_in
from bot.playback.player import GuildPlayer
from bot.speech.access import Caller
from bot.speech.control import Action, Seat, control_refusal

__all__ = [
    "bring_bot",
    "caller_of",
    "check_may",
    "check_voice_target",
    "seat_of",
    "voice_channel_of",
]


def caller_of(user: discord.User | discord.Member, guild_id: int | None) -> Caller:
    """The core's view of a member: id, server, roles, and whether they manage the server."""
    if isinstance(user, discord.Member):
        return Caller(
            user_id=user.id,
            guild_id=guild_id,
            role_ids=frozenset(role.id for role in user.roles),
            manager=user.guild_permissions.manage_guild,
        )
    return Caller(user_id=user.id, guild_id=guild_id)


def voice_channel_of(user: discord.User | discord.Member) -> VoiceTarget | None:
    """The voice channel (or Stage) `user` is in, if any."""
    if isinstance(user, discord.Member) and user.voice is not None:
        channel = user.voice.channel
        if isinstance(channel, discord.VoiceChannel | discord.StageChannel):
            return channel
    return None


def seat_of(user: discord.User | discord.Member, channel: VoiceTarget, author_id: int = 0) -> Seat:
    """Where `user` stands relative to the bot's session in `channel`."""
    listening = isinstance(user, discord.Member) and user in channel.members
    moves = isinstance(user, discord.Member) and channel.permissions_for(user).move_members
    others = [member for member in humans_in(channel) if member.id != user.id]
    return Seat(
        listening=listening,
        moves_members=moves,
        author=author_id == user.id,
        others_listening=len(others),
    )


def check_may(action: Action, user: discord.User | discord.Member, channel: VoiceTarget) -> None:
    """Raise, for free, if `user` may not do `action` to the bot's session in `channel`."""
    refusal = control_refusal(action, seat_of(user, channel), channel.mention)
    if refusal is not None:
        raise AccessDeniedError(refusal)


def check_voice_target(
    voices: VoiceManager, user: discord.User | discord.Member, target: VoiceTarget
) -> None:
    """Everything that would stop the bot speaking in `target`, checked before speech is made
    and paid for: permissions, a full channel, and listeners it would be pulled away from."""
    current = voices.connected_channel(target.guild)
    if current is not None and current != target:
        check_may(Action.MOVE, user, current)
    check_joinable(target)


async def bring_bot(voices: VoiceManager, target: VoiceTarget) -> tuple[GuildPlayer, str | None]:
    """Join (or move to) `target`; on a Stage, ask to speak. Returns the player and a line
    for the member when the bot cannot simply be heard there yet."""
    player = await voices.join(target)
    return player, await voices.take_the_stage(target)
