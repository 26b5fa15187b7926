"""A member's own settings: `/voice set|name|show|reset`, and `/forget-me` for their data.

`/voice name member:` is the one place a member acts on someone else's: managers clearing
a spoken name, as they may reset a nickname.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import AccessDeniedError, InvalidRequestError
from bot.locales import line, message_of, text
from bot.speech.names import NameRights, name_refusal
from bot.speech.narration import member_voice
from bot.speech.voices import get_voice
from bot.storage import MemberSettings
from bot.tree import NO_MENTIONS, locale_of
from cogs._shared import cleared, say, style_autocomplete, voice_autocomplete

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = ["VoiceSettings", "describe_member", "rights_of", "setup"]


def describe_member(
    settings: MemberSettings,
    default_voice: str,
    *,
    name_said_here: bool = True,
    locale: str | None = None,
) -> str:
    """What a member's settings mean in practice, in a few lines of their language.

    `name_said_here` is False in a server where the member may not change their nickname:
    narration reads their display name there, whatever spoken name they set elsewhere.
    """

    def t(key: str, /, **fields: object) -> str:
        return text(key, locale, **fields)

    not_chosen = t("voice.not_chosen")
    if settings.voice:
        voice = t("voice.chosen_voice", label=get_voice(settings.voice).label)
    else:
        stable = get_voice(member_voice(settings)).label
        voice = t("voice.default_voice", default=default_voice, stable=stable)
    temperature = f"{settings.temperature:g}" if settings.temperature is not None else not_chosen
    style = f"“{settings.style}”" if settings.style else t("voice.none")
    voice_message = t("voice.yes") if settings.voice_message else t("voice.no")
    pace = t(f"choice.{settings.pace}") if settings.pace else t("voice.pace_not_chosen")
    second = f"**{get_voice(settings.voice_2).label}**" if settings.voice_2 else not_chosen
    narrated = t("voice.yes") if settings.narrated else t("voice.not_narrated")
    name = f"“{settings.spoken_name}”" if settings.spoken_name else t("voice.display_name")
    if settings.spoken_name and not name_said_here:
        name = t("voice.display_name_here", name=name)
    return t(
        "voice.summary",
        voice=voice,
        temperature=temperature,
        style=style,
        voice_message=voice_message,
        name=name,
        pace=pace,
        second=second,
        narrated=narrated,
    )


def rights_of(interaction: discord.Interaction[TTSBot]) -> NameRights:
    """The member's nickname permissions where they ask. Discord resolves them into the
    interaction; neither can be changed per channel, so these are their server's."""
    permissions = interaction.permissions
    return NameRights(
        in_server=interaction.guild_id is not None,
        change_nickname=permissions.change_nickname,
        manage_nicknames=permissions.manage_nicknames,
    )


class VoiceSettings(commands.Cog, name="Voice settings"):
    voice = app_commands.Group(name="voice", description="Your own voice for /speak and narration")

    def __init__(self, bot: TTSBot) -> None:
        self.bot = bot

    async def _reply(self, interaction: discord.Interaction[TTSBot], answer: str) -> None:
        await interaction.response.send_message(
            answer, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    def _summary(
        self,
        interaction: discord.Interaction[TTSBot],
        settings: MemberSettings,
        head: str = "",
        *,
        name_said_here: bool = True,
    ) -> str:
        """The member's settings in their language, after `head` ("Saved.") if given."""
        summary = describe_member(
            settings,
            self.bot.settings.default_voice,
            name_said_here=name_said_here,
            locale=locale_of(interaction),
        )
        return f"{say(interaction, head)}\n{summary}" if head else summary

    @voice.command(name="set", description="Choose your voice, temperature or style")
    @app_commands.describe(
        voice="Your voice (type to search the 30 voices)",
        temperature="0 to 2: 0.4 is steady, 0.7 lively",
        style="How you are read: cheerful, calm, like a pirate… (none clears it)",
        voice_message="Post /speak's speech as a voice message unless you ask otherwise",
        pace="Slow, normal or fast: asked of Gemini as a direction, like a style",
        narrate_me="false: narration never reads your messages aloud, in any server",
    )
    @app_commands.autocomplete(voice=voice_autocomplete, style=style_autocomplete)
    async def set_voice(
        self,
        interaction: discord.Interaction[TTSBot],
        voice: str | None = None,
        temperature: app_commands.Range[float, 0.0, 2.0] | None = None,
        style: str | None = None,
        voice_message: bool | None = None,
        pace: Literal["slow", "normal", "fast"] | None = None,
        narrate_me: bool | None = None,
    ) -> None:
        changes: dict[str, object] = {}
        if pace is not None:
            changes["pace"] = pace
        if narrate_me is not None:
            changes["narrate_me"] = narrate_me
        if voice_message is not None:
            changes["voice_message"] = voice_message
        if voice is not None:
            changes["voice"] = voice
        if temperature is not None:
            changes["temperature"] = temperature
        if style is not None:
            changes["style"] = cleared(style)
        if not changes:
            raise InvalidRequestError(line("voice.nothing_to_set"))
        try:
            settings = await self.bot.services.storage.update_member(interaction.user.id, **changes)
        except ValueError as exc:
            raise InvalidRequestError(message_of(exc)) from None
        await self._reply(interaction, self._summary(interaction, settings, "voice.saved"))

    @voice.command(name="name", description="How narration says your name")
    @app_commands.describe(
        said_as="Your name as it should be said, e.g. Nwin (clear: your display name)",
        member="(Manage Nicknames) Clear this member's spoken name instead; needs said_as:clear",
    )
    async def name(
        self,
        interaction: discord.Interaction[TTSBot],
        said_as: app_commands.Range[str, 1, 60],
        member: discord.Member | discord.User | None = None,
    ) -> None:
        # Gemini guesses at names; the member knows how theirs is said. Cleared, narration
        # reads their display name again. The name is announced as theirs, so who may set
        # or clear it follows Discord's nickname rule (bot.speech.names).
        spoken_name = cleared(said_as)
        own = member is None or member.id == interaction.user.id
        refusal = name_refusal(rights_of(interaction), clearing=spoken_name == "", own=own)
        if refusal is not None:
            raise AccessDeniedError(refusal)
        if member is not None and not own:
            await self._clear_name_of(interaction, member)
            return
        try:
            settings = await self.bot.services.storage.update_member(
                interaction.user.id, spoken_name=spoken_name
            )
        except ValueError as exc:
            raise InvalidRequestError(message_of(exc)) from None
        await self._reply(interaction, self._summary(interaction, settings, "voice.saved"))

    async def _clear_name_of(
        self, interaction: discord.Interaction[TTSBot], member: discord.Member | discord.User
    ) -> None:
        """A manager's clearing: nothing is stored for a member who had no spoken name."""
        storage = self.bot.services.storage
        before = (await storage.get_member(member.id)).spoken_name
        if not before:
            await self._reply(
                interaction, say(interaction, "voice.no_spoken_name", member=member.mention)
            )
            return
        await storage.update_member(member.id, spoken_name="")
        await self._reply(
            interaction,
            say(interaction, "voice.cleared_name", member=member.mention, before=before),
        )

    @voice.command(name="show", description="See your voice settings")
    async def show(self, interaction: discord.Interaction[TTSBot]) -> None:
        settings = await self.bot.services.storage.get_member(interaction.user.id)
        rights = rights_of(interaction)
        said = not rights.in_server or rights.change_nickname
        await self._reply(interaction, self._summary(interaction, settings, name_said_here=said))

    @voice.command(name="reset", description="Forget your voice settings")
    async def reset(self, interaction: discord.Interaction[TTSBot]) -> None:
        await self.bot.services.storage.reset_member(interaction.user.id)
        settings = await self.bot.services.storage.get_member(interaction.user.id)
        await self._reply(interaction, self._summary(interaction, settings, "voice.reset"))

    @app_commands.command(
        name="forget-me", description="Delete everything the bot stores about you"
    )
    async def forget_me(self, interaction: discord.Interaction[TTSBot]) -> None:
        deleted = await self.bot.services.storage.forget_member(interaction.user.id)
        await self._reply(interaction, say(interaction, "voice.forgotten", count=deleted))


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(VoiceSettings(bot))
