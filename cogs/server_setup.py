"""`/setup channel` (Manage Server): the channel read aloud without any command.

The channel is the narration channel setting, which is stored, so it survives restarts: when
a member who is in a voice channel writes there (or in their voice channel's own chat), an
idle bot joins them by itself and reads, and leaves as after any join when the channel empties.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import BotError, NarrationDisabledError
from bot.locales import line
from bot.tree import NO_MENTIONS
from cogs._shared import say

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = ["ServerSetup", "setup"]


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ServerSetup(commands.GroupCog, group_name="setup"):
    """Set the bot up for this server (Manage Server)."""

    def __init__(self, bot: TTSBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        """Checked here too: admins can let anyone see a command, not let them change this."""
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    @app_commands.command(
        name="channel", description="Read a channel aloud by itself: I join whoever writes there"
    )
    @app_commands.describe(
        channel="The text channel, or a voice channel's chat, to read (default: this one)"
    )
    async def channel(
        self,
        interaction: discord.Interaction[TTSBot],
        channel: discord.TextChannel | discord.VoiceChannel | None = None,
    ) -> None:
        if not self.bot.intents.message_content:
            raise NarrationDisabledError()
        chosen = channel or interaction.channel
        if not isinstance(chosen, discord.TextChannel | discord.VoiceChannel):
            raise BotError(user_message=line("narrate.pick_text_channel"))
        guild = interaction.guild
        assert guild is not None
        if not chosen.permissions_for(guild.me).read_messages:
            raise BotError(user_message=line("narrate.cannot_read", channel=chosen.mention))
        await self.bot.services.storage.update_guild(guild.id, narration_channel_id=chosen.id)
        await interaction.response.send_message(
            say(interaction, "setup.channel", channel=chosen.mention),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(ServerSetup(bot))
