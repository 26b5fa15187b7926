"""Hearing a voice before choosing it: `/voices` opens menus of the 30 voices grouped by
character; picking one posts a private preview (`bot.synthesis.previews`) with buttons that
make it the member's voice or second voice.

The menus and buttons are dynamic items: their custom ids carry everything a press needs (the
menu, the voice, the member who opened it), so they keep working after a restart, and only
that member may use them.
"""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import AccessDeniedError, BotError
from bot.locales import line, text
from bot.playback.presence import caller_of
from bot.speech.access import check_access
from bot.speech.voices import get_voice, voice_menus
from bot.synthesis.previews import Previews, preview_language
from bot.tree import NO_MENTIONS, describe_error, locale_of, send_error

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = ["PickVoice", "UseVoice", "VoicePreviews", "menus_view", "setup"]

log = logging.getLogger(__name__)


def _menu_options(index: int) -> list[discord.SelectOption]:
    return [
        discord.SelectOption(label=voice.name, value=voice.name, description=voice.character)
        for voice in voice_menus()[index]
    ]


class PickVoice(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"voices:pick:(?P<menu>\d):(?P<owner>\d+)",
):
    """One menu of voices (Discord allows 25 options a menu: the 30 come in two)."""

    def __init__(self, menu: int, owner: int, locale: str | None = None) -> None:
        voices = voice_menus()[menu]
        first, last = voices[0].character, voices[-1].character
        super().__init__(
            discord.ui.Select(
                custom_id=f"voices:pick:{menu}:{owner}",
                placeholder=text("voices.menu", locale, first=first, last=last),
                options=_menu_options(menu),
            )
        )
        self.menu = menu
        self.owner = owner

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> PickVoice:
        menu = int(match["menu"])
        if menu >= len(voice_menus()):
            raise ValueError(f"no voice menu {menu}")
        return cls(menu, int(match["owner"]), locale_of(interaction))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        cog = interaction.client.get_cog(VoicePreviews.__cog_name__)
        assert isinstance(cog, VoicePreviews)
        await cog.guarded(interaction, self.owner, cog.preview(interaction, self.item.values[0]))


class UseVoice(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"voices:use:(?P<slot>[12]):(?P<voice>[A-Za-z]+):(?P<owner>\d+)",
):
    """Make the previewed voice the member's voice (slot 1) or second voice (slot 2)."""

    def __init__(self, slot: int, voice: str, owner: int, locale: str | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=text("voices.use" if slot == 1 else "voices.use_second", locale),
                style=discord.ButtonStyle.primary if slot == 1 else discord.ButtonStyle.secondary,
                custom_id=f"voices:use:{slot}:{voice}:{owner}",
            )
        )
        self.slot = slot
        self.voice = voice
        self.owner = owner

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> UseVoice:
        voice = get_voice(match["voice"]).name
        return cls(int(match["slot"]), voice, int(match["owner"]), locale_of(interaction))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        cog = interaction.client.get_cog(VoicePreviews.__cog_name__)
        assert isinstance(cog, VoicePreviews)
        await cog.guarded(interaction, self.owner, cog.use(interaction, self.slot, self.voice))


def menus_view(owner: int, locale: str | None = None) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for menu in range(len(voice_menus())):
        view.add_item(PickVoice(menu, owner, locale))
    return view


def use_view(voice: str, owner: int, locale: str | None = None) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(UseVoice(1, voice, owner, locale))
    view.add_item(UseVoice(2, voice, owner, locale))
    return view


class VoicePreviews(commands.Cog, name="Voice previews"):
    def __init__(self, bot: TTSBot) -> None:
        self.bot = bot
        self.previews = Previews(bot.services.speech, bot.settings.data_dir / "previews")

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(PickVoice, UseVoice)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(PickVoice, UseVoice)

    @app_commands.command(name="voices", description="Hear the 30 voices and choose yours")
    async def voices(self, interaction: discord.Interaction[TTSBot]) -> None:
        locale = locale_of(interaction)
        await interaction.response.send_message(
            text("voices.open", locale),
            view=menus_view(interaction.user.id, locale),
            ephemeral=True,
        )

    async def preview(self, interaction: discord.Interaction[Any], voice: str) -> None:
        """A private preview: the server's rules first (free), then the stored clip, or its
        one call. The bot pays for previews, never a member's quota."""
        guild_id = interaction.guild_id
        guild = await self.bot.services.storage.get_guild(guild_id) if guild_id else None
        check_access(caller_of(interaction.user, guild_id), guild, voice=False)
        await interaction.response.defer(ephemeral=True, thinking=True)
        locale = locale_of(interaction)
        made = await self.previews.get(voice, preview_language(locale))
        label = get_voice(made.voice).label
        await interaction.followup.send(
            text("voices.heard", locale, label=label),
            file=discord.File(io.BytesIO(made.data), filename=made.filename),
            view=use_view(made.voice, interaction.user.id, locale),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def use(self, interaction: discord.Interaction[Any], slot: int, voice: str) -> None:
        field = "voice" if slot == 1 else "voice_2"
        settings = await self.bot.services.storage.update_member(
            interaction.user.id, **{field: voice}
        )
        label = get_voice(getattr(settings, field)).label
        key = "voices.saved" if slot == 1 else "voices.saved_second"
        await interaction.response.send_message(
            text(key, locale_of(interaction), label=label),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def guarded(self, interaction: discord.Interaction[Any], owner: int, work: Any) -> None:
        """Run a menu's or a button's work for its owner only, answering any failure the way
        commands' failures are answered (the command tree does not see components')."""
        try:
            if interaction.user.id != owner:
                raise AccessDeniedError(line("voices.not_yours"))
            await work
        except Exception as error:
            message, ref = describe_error(error, locale=locale_of(interaction))
            if ref is not None:
                log.exception("Unexpected error ref=%s in a /voices component", ref)
                self.bot.report_unexpected("/voices", ref, error)
            elif not isinstance(error, BotError):
                log.info("A /voices component failed: %s", error)
            await send_error(interaction, message)
        finally:
            work.close()  # Not awaited when refused: closed, so it is not left pending.


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(VoicePreviews(bot))
