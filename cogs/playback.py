"""Voice channel commands: /join, /leave, /skip, /stop, /queue, and auto-leave.

The session belongs to who is listening (`bot.speech.control`): these commands translate a
Discord member into a `Seat` and ask the rule; every refusal is free and private.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import AccessDeniedError, NotConnectedError, NotInVoiceError
from bot.playback.connections import VoiceTarget
from bot.playback.player import GuildPlayer
from bot.playback.presence import (
    bring_bot,
    check_may,
    check_voice_target,
    seat_of,
    voice_channel_of,
)
from bot.speech.control import Action, control_refusal, queue_line
from bot.tree import NO_MENTIONS
from cogs._shared import localized, say

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = ["Playback", "setup"]

log = logging.getLogger(__name__)


class Playback(commands.Cog):
    def __init__(self, bot: TTSBot) -> None:
        self.bot = bot

    async def _reply(
        self, interaction: discord.Interaction[TTSBot], key: str, /, **fields: object
    ) -> None:
        await interaction.response.send_message(
            say(interaction, key, **fields), ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    def _session(self, interaction: discord.Interaction[TTSBot]) -> tuple[VoiceTarget, GuildPlayer]:
        guild = interaction.guild
        assert guild is not None
        channel = self.bot.playback.connected_channel(guild)
        player = self.bot.playback.player(guild.id)
        if channel is None or player is None:
            raise NotConnectedError()
        return channel, player

    @app_commands.guild_only()
    @app_commands.command(name="join", description="Bring the bot into your voice channel")
    async def join(self, interaction: discord.Interaction[TTSBot]) -> None:
        channel = voice_channel_of(interaction.user)
        if channel is None:
            raise NotInVoiceError()
        check_voice_target(self.bot.playback, interaction.user, channel)
        await interaction.response.defer(ephemeral=True, thinking=True)
        _, note = await bring_bot(self.bot.playback, channel)
        line = say(interaction, "playback.joined", channel=channel.mention)
        warning = f"\n⚠️ {localized(interaction, note)}" if note else ""
        await interaction.edit_original_response(
            content=line + warning, allowed_mentions=NO_MENTIONS
        )

    @app_commands.guild_only()
    @app_commands.command(name="leave", description="Make the bot leave its voice channel")
    async def leave(self, interaction: discord.Interaction[TTSBot]) -> None:
        guild = interaction.guild
        assert guild is not None
        channel = self.bot.playback.connected_channel(guild)
        if channel is None and self.bot.playback.player(guild.id) is None:
            raise NotConnectedError()
        if channel is not None:
            check_may(Action.LEAVE, interaction.user, channel)
        # Answer first: disconnecting waits for Discord's confirmation, which can take longer
        # than the 3 s an interaction may wait for its answer.
        await self._reply(interaction, "playback.leaving")
        await self.bot.playback.leave(guild, f"/leave by {interaction.user.id}")

    @app_commands.guild_only()
    @app_commands.command(name="skip", description="Skip what is being said now")
    async def skip(self, interaction: discord.Interaction[TTSBot]) -> None:
        channel, player = self._session(interaction)
        current = player.current
        if current is None:
            await self._reply(interaction, "playback.nothing_playing")
            return
        seat = seat_of(interaction.user, channel, author_id=current.user_id)
        refusal = control_refusal(Action.SKIP, seat, channel.mention)
        if refusal is not None:
            raise AccessDeniedError(refusal)
        await self._reply(
            interaction, "playback.skipped" if player.skip() else "playback.nothing_playing"
        )

    @app_commands.guild_only()
    @app_commands.command(name="stop", description="Stop speaking and clear the queue")
    async def stop(self, interaction: discord.Interaction[TTSBot]) -> None:
        channel, player = self._session(interaction)
        check_may(Action.STOP, interaction.user, channel)
        dropped = await player.stop()
        await self._reply(interaction, "playback.stopped", count=dropped)

    @app_commands.guild_only()
    @app_commands.command(name="queue", description="Who is about to be heard, and how long")
    async def queue(self, interaction: discord.Interaction[TTSBot]) -> None:
        _, player = self._session(interaction)
        lines = []
        if player.current is not None:
            current = queue_line(player.current.label, player.current.seconds)
            lines.append(f"▶️ {localized(interaction, current)}")
        lines += [
            f"{n}. {localized(interaction, queue_line(item.label, item.seconds))}"
            for n, item in enumerate(player.queue, start=1)
        ]
        listing = "\n".join(lines[:20]) or say(interaction, "playback.queue_empty")
        await interaction.response.send_message(
            listing, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @commands.Cog.listener()
    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        await self.bot.playback.on_voice_state_update(member, before, after)


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(Playback(bot))
