"""Narration: while the bot is in voice, read a text channel aloud, each member in their voice.

Needs the privileged Message Content intent; without it the commands say so and nothing else
in the bot is affected.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import BotError, NarrationDisabledError, NotInVoiceError
from bot.playback.player import Utterance
from bot.speech.narration import NarrationRules, Narrator, skip_reason
from bot.synthesis.service import Destination
from bot.tree import NO_MENTIONS
from cogs._shared import caller_of, facts_from_message
from cogs.playback import caller_channel

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = ["Narration", "setup"]

log = logging.getLogger(__name__)


class Narration(commands.Cog):
    narrate = app_commands.Group(
        name="narrate",
        description="Read a text channel aloud in voice",
        guild_only=True,
        allowed_contexts=app_commands.AppCommandContext(guild=True),
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: TTSBot) -> None:
        self.bot = bot
        self.narrator = Narrator()

    @narrate.command(name="start", description="Join your voice channel and read a channel aloud")
    @app_commands.describe(channel="The text channel to read (default: this one)")
    async def start(
        self,
        interaction: discord.Interaction[TTSBot],
        channel: discord.TextChannel | None = None,
    ) -> None:
        if not self.bot.intents.message_content:
            raise NarrationDisabledError()
        voice_channel = caller_channel(interaction)
        if voice_channel is None:
            raise NotInVoiceError()
        text_channel = channel or interaction.channel
        if not isinstance(text_channel, discord.TextChannel | discord.VoiceChannel):
            raise BotError(user_message="Pick a text channel to read.")
        assert interaction.guild is not None
        if not text_channel.permissions_for(interaction.guild.me).read_messages:
            raise BotError(user_message=f"I can't read {text_channel.mention}.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.bot.playback.join(voice_channel)
        guild = await self.bot.services.storage.update_guild(
            interaction.guild.id, narration_channel_id=text_channel.id
        )
        skip = guild.narration_skip_prefix
        hint = f" Messages starting with `{skip}` are skipped." if skip else ""
        who = "members in the voice channel" if guild.narration_voice_only else "everyone"
        await interaction.edit_original_response(
            content=(
                f"📖 Reading {text_channel.mention} aloud in {voice_channel.mention} "
                f"for {who}.{hint} Use /narrate stop to end."
            ),
            allowed_mentions=NO_MENTIONS,
        )

    @narrate.command(name="stop", description="Stop reading the text channel aloud")
    async def stop(self, interaction: discord.Interaction[TTSBot]) -> None:
        assert interaction.guild is not None
        before = await self.bot.services.storage.get_guild(interaction.guild.id)
        await self.bot.services.storage.update_guild(
            interaction.guild.id, narration_channel_id=None
        )
        message = (
            "📕 Narration stopped."
            if before.narration_channel_id
            else "Narration was not on; nothing to stop."
        )
        await interaction.response.send_message(
            message, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        guild = message.guild
        if guild is None or message.webhook_id is not None or message.author.bot:
            return
        voice_channel = self.bot.playback.connected_channel(guild)
        player = self.bot.playback.player(guild.id)
        if voice_channel is None or player is None:
            return
        settings = await self.bot.services.storage.get_guild(guild.id)
        if settings.narration_channel_id != message.channel.id:
            return
        rules = NarrationRules.from_guild(settings)
        author = message.author
        in_voice = (
            isinstance(author, discord.Member)
            and author.voice is not None
            and author.voice.channel == voice_channel
        )
        reason = skip_reason(
            message.content, author_is_bot=author.bot, author_in_voice=in_voice, rules=rules
        )
        if reason is not None:
            log.debug("Not reading message %s: %s", message.id, reason)
            return
        text = self.narrator.compose(
            facts_from_message(message),
            channel_id=message.channel.id,
            author_id=author.id,
            author_name=author.display_name,
            rules=rules,
        )
        if not text:
            return
        try:
            stream = await self.bot.services.speech.begin(
                caller_of(author, guild.id),
                text,
                destination=Destination.NARRATION,
                guild=settings,
            )
        except BotError as exc:
            log.info("Not reading message %s: %s", message.id, exc)
            return
        utterance = Utterance(
            label=f"{author.display_name} (narration)",
            user_id=author.id,
            clips=self.bot.services.speech.ogg_clips(stream.audio(), stream.requests[0]),
            on_close=stream.cancel,
        )
        try:
            player.enqueue(utterance)
        except BotError as exc:
            stream.cancel()
            log.info("Not reading message %s: %s", message.id, exc)


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(Narration(bot))
