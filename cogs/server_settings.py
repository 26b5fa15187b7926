"""Server settings (`/settings …`): narration, limits, who may use the bot. Manage Server only.

The permission is the command's default (so Discord hides it from others) and is checked again
here, because server admins can change who sees a command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import InvalidRequestError
from bot.locales import line, message_of, text
from bot.speech.request import text_limit
from bot.storage import GuildSettings
from bot.storage.validation import MAX_REPEAT, MAX_STALE_AFTER
from bot.tree import NO_MENTIONS, locale_of
from cogs._shared import cleared, say

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = ["RESETTABLE", "ServerSettings", "settings_embed", "setup", "stale_after_words"]

#: What `/settings reset` can put back to its default.
RESETTABLE = {
    "narration_channel": "narration_channel_id",
    "narration": "narration_voice_only narration_skip_prefix narration_max_length "
    "narration_emoji narration_say_names narration_skip_silent narration_said "
    "narration_merge_speakers narration_stale_after narration_ignore_stage_audience "
    "narration_require_prefix narration_max_repeat",
    "pace": "pace",
    "max_text_length": "max_text_length",
    "cooldown": "user_cooldown",
    "daily_quota": "daily_quota",
    "allowed_role": "allowed_role_id",
    "switches": "allow_files allow_voice",
    "everything": " ".join(f for f in GuildSettings.__dataclass_fields__ if f != "guild_id"),
}


def stale_after_words(seconds: int, locale: str | None = None) -> str:
    """The bound as an admin thinks of it: in minutes, the way `/settings narration` takes it."""
    if seconds <= 0:
        return text("settings.stale_never", locale)
    if seconds % 60 == 0:
        age = text("settings.age_minutes", locale, count=seconds // 60)
    else:
        age = text("settings.age_seconds", locale, count=seconds)
    return text("settings.stale_after", locale, age=age)


def settings_embed(
    settings: GuildSettings,
    *,
    bot_text_limit: int,
    bot_cooldown: float,
    locale: str | None = None,
    server_locale: str | None = None,
) -> discord.Embed:
    """All server settings in one embed, with the effective value where a default applies,
    in the reader's language (`locale`); the default "Alice said" is shown as the server's
    language (`server_locale`) says it, since that is what everyone hears."""

    def t(key: str, /, **fields: object) -> str:
        return text(key, locale, **fields)

    def yes(flag: bool) -> str:
        return t("voice.yes") if flag else t("voice.no")

    none = t("settings.none")
    channel_id = settings.narration_channel_id
    channel = f"<#{channel_id}>" if channel_id else t("settings.not_set")
    skip = f"`{settings.narration_skip_prefix}`" if settings.narration_skip_prefix else none
    needed = settings.narration_require_prefix
    required = t("settings.required", prefix=needed) if needed else t("settings.required_none")
    repeat = settings.narration_max_repeat
    repeats = t("settings.repeat", count=repeat) if repeat else t("settings.repeat_none")
    emoji = t(
        "settings.emoji_name" if settings.narration_emoji == "name" else "settings.emoji_drop"
    )
    said = settings.narration_said or text("narration.said", server_locale, name="{name}")
    embed = discord.Embed(title=t("settings.title"), colour=0x5865F2)
    narration = t(
        "settings.narration_value",
        channel=channel,
        voice_only=yes(settings.narration_voice_only),
        skip=skip,
        skip_silent=yes(settings.narration_skip_silent),
        required=required,
        stage=yes(settings.narration_ignore_stage_audience),
        repeats=repeats,
        max_length=settings.narration_max_length,
        emoji=emoji,
        say_names=yes(settings.narration_say_names),
        said=said,
        merge=yes(settings.narration_merge_speakers),
        stale=stale_after_words(settings.narration_stale_after, locale),
    )
    embed.add_field(name=t("settings.narration"), value=narration, inline=False)
    limit = text_limit(bot_text_limit, settings.max_text_length)
    if settings.max_text_length is None:
        whose = t("settings.bot_default")
    elif settings.max_text_length > limit:
        whose = t("settings.above_limit", value=settings.max_text_length)
    else:
        whose = ""
    own_cooldown = settings.user_cooldown is not None
    cooldown = settings.user_cooldown if settings.user_cooldown is not None else bot_cooldown
    quota = settings.daily_quota if settings.daily_quota is not None else t("settings.unlimited")
    limits = t(
        "settings.limits_value",
        limit=limit,
        whose=whose,
        cooldown=cooldown,
        cooldown_whose="" if own_cooldown else t("settings.bot_default"),
        quota=quota,
        pace=t(f"choice.{settings.pace or 'normal'}"),
    )
    embed.add_field(name=t("settings.limits"), value=limits, inline=False)
    role_id = settings.allowed_role_id
    role = f"<@&{role_id}>" if role_id else t("settings.everyone")
    access = t(
        "settings.access_value",
        role=role,
        files=yes(settings.allow_files),
        voice=yes(settings.allow_voice),
    )
    embed.add_field(name=t("settings.access"), value=access, inline=False)
    return embed


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ServerSettings(commands.GroupCog, group_name="settings"):
    """Speech settings for this server (Manage Server)."""

    def __init__(self, bot: TTSBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        """Checked here too: admins can let anyone see a command, not let them change this."""
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    async def _update(
        self,
        interaction: discord.Interaction[TTSBot],
        clear: tuple[str, ...] = (),
        **changes: object,
    ) -> None:
        """Save what was given; the fields in `clear` go back to their default (None)."""
        assert interaction.guild_id is not None
        changes = {key: value for key, value in changes.items() if value is not None}
        changes.update(dict.fromkeys(clear))
        if not changes:
            raise InvalidRequestError(line("settings.give_one"))
        try:
            settings = await self.bot.services.storage.update_guild(interaction.guild_id, **changes)
        except ValueError as exc:
            raise InvalidRequestError(message_of(exc)) from None
        await self._show(interaction, settings, say(interaction, "settings.saved"))

    async def _show(
        self, interaction: discord.Interaction[TTSBot], settings: GuildSettings, text: str = ""
    ) -> None:
        embed = settings_embed(
            settings,
            bot_text_limit=self.bot.settings.max_text_length,
            bot_cooldown=self.bot.settings.user_cooldown,
            locale=locale_of(interaction),
            server_locale=str(interaction.guild_locale.value) if interaction.guild_locale else None,
        )
        await interaction.response.send_message(
            text or None, embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @app_commands.command(name="show", description="See every speech setting of this server")
    async def show(self, interaction: discord.Interaction[TTSBot]) -> None:
        assert interaction.guild_id is not None
        await self._show(
            interaction, await self.bot.services.storage.get_guild(interaction.guild_id)
        )

    @app_commands.command(name="narration", description="How a text channel is read aloud")
    @app_commands.describe(
        channel="The text channel, or a voice channel's chat, to read while the bot is in voice",
        voice_only="Read only members who are in the bot's voice channel",
        skip_prefix="Messages starting with this are not read (e.g. ;); none reads every message",
        skip_silent="Skip messages sent with @silent",
        max_length="Longest message read, in characters; longer ones are cut",
        emoji="Read custom emoji by name, or drop them",
        say_names="Say “Alice said” before a new speaker",
        said="Announce a speaker as e.g. “{name} says”; “default” goes back to “{name} said”",
        merge_speakers="When behind, read two members' messages in one two-voice call "
        "(saves calls; voices may be swapped)",
        stale_after="Skip a message still waiting to be read after this many minutes "
        "(0 never skips)",
        require_prefix="Read only messages starting with this (e.g. !), said without it; "
        "none reads every message",
        ignore_stage_audience="Don't read members listening in a Stage's audience",
        max_repeat="Read a repeated character at most this many times (aaaaaaa → aaa); "
        "0 reads it as written",
    )
    async def narration(
        self,
        interaction: discord.Interaction[TTSBot],
        channel: discord.TextChannel | discord.VoiceChannel | None = None,
        voice_only: bool | None = None,
        skip_prefix: app_commands.Range[str, 1, 10] | None = None,
        max_length: app_commands.Range[int, 1, 4000] | None = None,
        emoji: Literal["name", "drop"] | None = None,
        say_names: bool | None = None,
        skip_silent: bool | None = None,
        said: app_commands.Range[str, 1, 60] | None = None,
        merge_speakers: bool | None = None,
        stale_after: app_commands.Range[int, 0, MAX_STALE_AFTER // 60] | None = None,
        require_prefix: app_commands.Range[str, 1, 10] | None = None,
        ignore_stage_audience: bool | None = None,
        max_repeat: app_commands.Range[int, 0, MAX_REPEAT] | None = None,
    ) -> None:
        default_said = said is not None and (
            cleared(said) == "" or said.strip().casefold() == "default"
        )
        await self._update(
            interaction,
            ("narration_said",) if default_said else (),
            narration_said=None if default_said else said,
            narration_channel_id=channel.id if channel else None,
            narration_voice_only=voice_only,
            narration_skip_prefix=cleared(skip_prefix),
            narration_max_length=max_length,
            narration_emoji=emoji,
            narration_say_names=say_names,
            narration_skip_silent=skip_silent,
            narration_merge_speakers=merge_speakers,
            narration_stale_after=None if stale_after is None else stale_after * 60,
            narration_require_prefix=cleared(require_prefix),
            narration_ignore_stage_audience=ignore_stage_audience,
            narration_max_repeat=max_repeat,
        )

    @app_commands.command(name="speech", description="How speech sounds for members")
    @app_commands.describe(
        pace="The pace for members who chose none: asked of Gemini as a direction, like a style"
    )
    async def speech(
        self,
        interaction: discord.Interaction[TTSBot],
        pace: Literal["slow", "normal", "fast"],
    ) -> None:
        await self._update(interaction, pace=pace)

    @app_commands.command(name="limits", description="Text length, cooldown and daily quota")
    @app_commands.describe(
        max_text_length="Longest text one /speak may speak, in characters",
        cooldown="Seconds between one member's requests",
        daily_quota="Requests per member per day (each call costs money)",
    )
    async def limits(
        self,
        interaction: discord.Interaction[TTSBot],
        max_text_length: app_commands.Range[int, 1, 20_000] | None = None,
        cooldown: app_commands.Range[float, 0.0, 3600.0] | None = None,
        daily_quota: app_commands.Range[int, 0, 1_000_000] | None = None,
    ) -> None:
        await self._update(
            interaction,
            max_text_length=max_text_length,
            user_cooldown=cooldown,
            daily_quota=daily_quota,
        )

    @app_commands.command(name="access", description="Who may use the bot, and where")
    @app_commands.describe(
        role="Only members with this role may use the bot (managers always may)",
        allow_files="Allow speech files posted in chat",
        allow_voice="Allow speech in voice channels (and narration)",
    )
    async def access(
        self,
        interaction: discord.Interaction[TTSBot],
        role: discord.Role | None = None,
        allow_files: bool | None = None,
        allow_voice: bool | None = None,
    ) -> None:
        await self._update(
            interaction,
            allowed_role_id=role.id if role else None,
            allow_files=allow_files,
            allow_voice=allow_voice,
        )

    @app_commands.command(name="reset", description="Put a setting back to its default")
    @app_commands.describe(setting="What to reset")
    @app_commands.choices(  # Derived from the table, so a choice can't lack its fields.
        setting=[app_commands.Choice(name=key, value=key) for key in RESETTABLE]
    )
    async def reset(
        self, interaction: discord.Interaction[TTSBot], setting: app_commands.Choice[str]
    ) -> None:
        assert interaction.guild_id is not None
        defaults = GuildSettings.defaults(interaction.guild_id)
        fields = RESETTABLE[setting.value].split()
        changes = {name: getattr(defaults, name) for name in fields}
        settings = await self.bot.services.storage.update_guild(interaction.guild_id, **changes)
        what = say(interaction, f"choice.{setting.value}")
        await self._show(interaction, settings, say(interaction, "settings.reset", setting=what))


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(ServerSettings(bot))
