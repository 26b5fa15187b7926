"""Narration: while the bot is in voice, read a text channel aloud, each member in their voice.

Needs the privileged Message Content intent; without it the commands say so and nothing else
in the bot is affected. The decisions live in `bot.playback.narration`: this extension only
turns Discord's events into calls on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import BotError, NarrationDisabledError, NotInVoiceError
from bot.locales import line
from bot.playback.narration import Incoming, NarrationReader
from bot.playback.presence import bring_bot, check_voice_target, voice_channel_of
from bot.tree import NO_MENTIONS
from cogs._shared import facts_from_message, localized, say

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = ["Narration", "setup"]

#: Message types a member writes; every other type is Discord's (joins, pins, new threads).
READABLE_TYPES = (discord.MessageType.default, discord.MessageType.reply)

NarrationChannel = discord.TextChannel | discord.VoiceChannel


def incoming(message: discord.Message, guild: discord.Guild) -> Incoming:
    """The message as narration reads it; an edit's payload may lack the member, so the
    author is looked up in the server where it can be."""
    author = message.author
    if not isinstance(author, discord.Member):
        author = guild.get_member(author.id) or author
    return Incoming(
        message_id=message.id,
        guild=guild,
        channel=message.channel,
        channel_id=message.channel.id,
        author=author,
        content=message.content,
        facts=facts_from_message(message),
        system=message.type not in READABLE_TYPES,
        silent=message.flags.suppress_notifications,
    )


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
        self.reader = NarrationReader(
            bot.playback,
            bot.services.speech,
            bot.services.storage,
            merge=bot.settings.narration_merge,
            chunk_chars=bot.settings.chunk_chars,
            on_unexpected=bot.report_unexpected,
        )
        bot.narration = self.reader  # Its backlog is in the metrics.

    @narrate.command(name="start", description="Join your voice channel and read a channel aloud")
    @app_commands.describe(
        channel="The text channel, or a voice channel's chat, to read (default: this one)"
    )
    async def start(
        self,
        interaction: discord.Interaction[TTSBot],
        channel: NarrationChannel | None = None,
    ) -> None:
        if not self.bot.intents.message_content:
            raise NarrationDisabledError()
        voice_channel = voice_channel_of(interaction.user)
        if voice_channel is None:
            raise NotInVoiceError()
        text_channel = channel or interaction.channel
        if not isinstance(text_channel, NarrationChannel):
            raise BotError(user_message=line("narrate.pick_text_channel"))
        assert interaction.guild is not None
        if not text_channel.permissions_for(interaction.guild.me).read_messages:
            raise BotError(user_message=line("narrate.cannot_read", channel=text_channel.mention))
        check_voice_target(self.bot.playback, interaction.user, voice_channel)
        await interaction.response.defer(ephemeral=True, thinking=True)
        _, note = await bring_bot(self.bot.playback, voice_channel)
        guild = await self.bot.services.storage.update_guild(
            interaction.guild.id, narration_channel_id=text_channel.id
        )
        skip = guild.narration_skip_prefix
        hint = say(interaction, "narrate.skip_hint", prefix=skip) if skip else ""
        who = say(
            interaction,
            "narrate.for_voice" if guild.narration_voice_only else "narrate.for_everyone",
        )
        warning = f"\n⚠️ {localized(interaction, note)}" if note else ""
        started = say(
            interaction,
            "narrate.started",
            channel=text_channel.mention,
            voice_channel=voice_channel.mention,
            who=who,
            hint=hint,
        )
        await interaction.edit_original_response(
            content=started + warning, allowed_mentions=NO_MENTIONS
        )

    @narrate.command(name="stop", description="Stop reading the text channel aloud")
    async def stop(self, interaction: discord.Interaction[TTSBot]) -> None:
        assert interaction.guild is not None
        before = await self.bot.services.storage.get_guild(interaction.guild.id)
        await self.bot.services.storage.update_guild(
            interaction.guild.id, narration_channel_id=None
        )
        message = say(
            interaction, "narrate.stopped" if before.narration_channel_id else "narrate.was_off"
        )
        await interaction.response.send_message(
            message, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        guild = message.guild
        if guild is None or message.webhook_id is not None or message.author.bot:
            return
        await self.reader.read(incoming(message, guild))

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await self.reader.delete(payload.guild_id, payload.message_id)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        guild = payload.message.guild
        if guild is not None:
            await self.reader.edit(incoming(payload.message, guild))

    async def cog_unload(self) -> None:
        if self.bot.narration is self.reader:
            self.bot.narration = None
        await self.reader.close()


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(Narration(bot))
