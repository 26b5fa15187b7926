"""Voice channel commands: /join, /leave, /skip, /stop, /queue, and auto-leave."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import NotConnectedError, NotInVoiceError
from bot.playback.connections import VoiceTarget
from bot.tree import NO_MENTIONS

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = ["Playback", "caller_channel", "setup"]


def caller_channel(interaction: discord.Interaction[TTSBot]) -> VoiceTarget | None:
    """The voice channel the member who ran the command is in, if any."""
    user = interaction.user
    if isinstance(user, discord.Member) and user.voice is not None:
        channel = user.voice.channel
        if isinstance(channel, discord.VoiceChannel | discord.StageChannel):
            return channel
    return None


class Playback(commands.Cog):
    def __init__(self, bot: TTSBot) -> None:
        self.bot = bot

    async def _reply(self, interaction: discord.Interaction[TTSBot], message: str) -> None:
        await interaction.response.send_message(
            message, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @app_commands.guild_only()
    @app_commands.command(name="join", description="Bring the bot into your voice channel")
    async def join(self, interaction: discord.Interaction[TTSBot]) -> None:
        channel = caller_channel(interaction)
        if channel is None:
            raise NotInVoiceError()
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.bot.playback.join(channel)
        await interaction.edit_original_response(
            content=f"🔊 Joined {channel.mention}. Use /speak, or /narrate to read a channel aloud."
        )

    @app_commands.guild_only()
    @app_commands.command(name="leave", description="Make the bot leave its voice channel")
    async def leave(self, interaction: discord.Interaction[TTSBot]) -> None:
        assert interaction.guild is not None
        if not await self.bot.playback.leave(interaction.guild, f"/leave by {interaction.user.id}"):
            raise NotConnectedError()
        await self._reply(interaction, "👋 Left the voice channel.")

    @app_commands.guild_only()
    @app_commands.command(name="skip", description="Skip what is being said now")
    async def skip(self, interaction: discord.Interaction[TTSBot]) -> None:
        assert interaction.guild_id is not None
        player = self.bot.playback.player(interaction.guild_id)
        if player is None:
            raise NotConnectedError()
        await self._reply(interaction, "⏭️ Skipped." if player.skip() else "Nothing is playing.")

    @app_commands.guild_only()
    @app_commands.command(name="stop", description="Stop speaking and clear the queue")
    async def stop(self, interaction: discord.Interaction[TTSBot]) -> None:
        assert interaction.guild_id is not None
        player = self.bot.playback.player(interaction.guild_id)
        if player is None:
            raise NotConnectedError()
        dropped = await player.stop()
        await self._reply(interaction, f"⏹️ Stopped; cleared {dropped} waiting.")

    @app_commands.guild_only()
    @app_commands.command(name="queue", description="What the bot is about to say")
    async def queue(self, interaction: discord.Interaction[TTSBot]) -> None:
        assert interaction.guild_id is not None
        player = self.bot.playback.player(interaction.guild_id)
        if player is None:
            raise NotConnectedError()
        lines = []
        if player.current is not None:
            lines.append(f"▶️ {player.current.label}")
        lines += [f"{n}. {item.label}" for n, item in enumerate(player.queue, start=1)]
        await self._reply(interaction, "\n".join(lines[:20]) or "The queue is empty.")

    @commands.Cog.listener()
    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        await self.bot.playback.on_voice_state_update(member, before, after)


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(Playback(bot))
