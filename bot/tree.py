"""One error handler for every application command: a friendly, private line for each error.

An unexpected error gets a short reference id in the message and the same id in the log, so an
operator can find the traceback a member reports; the operator's alert gets it too
(`bot.incidents`), so nobody has to read the log to learn that something broke.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
from discord import app_commands

from bot.errors import BotError, CooldownError, QuotaExceededError
from bot.locales import CATALOGUES, ENGLISH, language_of, text

__all__ = [
    "NO_MENTIONS",
    "CatalogueTranslator",
    "TTSCommandTree",
    "catalogue_key",
    "describe_error",
    "locale_of",
    "requires_guild",
    "send_error",
]

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()


def describe_error(
    error: BaseException, *, now: datetime | None = None, locale: str | None = None
) -> tuple[str, str | None]:
    """The message for a member, in their language, and a reference id when the error was
    unexpected."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, CooldownError):
        moment = (now or datetime.now(UTC)) + timedelta(seconds=error.retry_after)
        return text("error.cooldown_until", locale, when=discord.utils.format_dt(moment, "R")), None
    if isinstance(error, QuotaExceededError):
        reset = datetime.fromtimestamp(error.reset_at, UTC)
        return error.message(discord.utils.format_dt(reset, "R")).to(locale), None
    if isinstance(error, BotError):
        return error.localized(locale), None
    if isinstance(error, app_commands.CommandOnCooldown):
        return text("error.slow_down", locale, seconds=f"{error.retry_after:.0f}"), None
    if isinstance(error, app_commands.NoPrivateMessage):
        return text("error.server_only", locale), None
    if isinstance(error, app_commands.MissingPermissions):
        needed = ", ".join(p.replace("_", " ").title() for p in error.missing_permissions)
        return text("error.member_needs_permission", locale, permission=needed), None
    if isinstance(error, app_commands.BotMissingPermissions):
        needed = ", ".join(p.replace("_", " ").title() for p in error.missing_permissions)
        return text("error.bot_needs_permission", locale, permission=needed), None
    if isinstance(error, app_commands.TransformerError):
        return text("error.bad_value", locale, value=error.value), None
    if isinstance(error, app_commands.CheckFailure):
        return text("error.not_here", locale), None
    ref = secrets.token_hex(3)
    return text("error.unexpected", locale, ref=ref), ref


def locale_of(interaction: discord.Interaction[Any]) -> str:
    """The member's Discord language, as the catalogue takes it ("de", "pt-BR", "en-US")."""
    return str(interaction.locale.value)


class CatalogueTranslator(app_commands.Translator):
    """Command and option descriptions, choices and the message menu's name in every language
    of the catalogue, sent with the command list when it is synced. Command and option names
    stay English: Discord holds names to a stricter pattern, and members share them in chat.

    A string is found by where it is (`cmd.<command path>[.<option>]`, `choice.<value>`,
    `menu.<name>`), so the English in the decorators stays the source; a test holds the two
    equal."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        language = language_of(locale.value)
        if language == ENGLISH:
            return None  # The decorators' own English.
        key = catalogue_key(context)
        if key is None or key not in CATALOGUES[language]:
            return None
        return text(key, language)


def catalogue_key(context: app_commands.TranslationContextTypes) -> str | None:
    """Where the catalogue keeps a string the command tree asks to translate, or None for
    strings kept as they are (names, and anything the catalogue does not hold)."""
    where = context.location
    data: Any = context.data
    places = app_commands.TranslationContextLocation
    if where in (places.command_description, places.group_description):
        return "cmd." + str(data.qualified_name).replace(" ", ".")
    if where is places.parameter_description:
        return f"cmd.{data.command.qualified_name.replace(' ', '.')}.{data.name}"
    if where is places.choice_name:
        return f"choice.{data.value}"
    if where is places.command_name and isinstance(data, app_commands.ContextMenu):
        return f"menu.{data.name}"
    return None


async def send_error(interaction: discord.Interaction[Any], message: str) -> None:
    """Answer privately if the interaction is fresh, else replace the public placeholder."""
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(
                content=f"⚠️ {message}", attachments=[], allowed_mentions=NO_MENTIONS
            )
        else:
            await interaction.response.send_message(
                message, ephemeral=True, allowed_mentions=NO_MENTIONS
            )
    except discord.HTTPException as exc:  # Expired token, deleted channel: nothing to tell.
        log.info("Could not deliver an error message: %s", exc)


def requires_guild(command: object) -> bool:
    """Whether a command (or the top-level group it belongs to) is declared guild-only.

    discord.py only publishes the flag; Discord hides such commands in DMs, but a stale
    client or a command list synced before the flag was set still sends them. The tree
    checks it on every use, so no DM ever reaches a command that needs a server.
    """
    root = getattr(command, "root_parent", None) or command
    contexts = getattr(root, "allowed_contexts", None)
    if contexts is not None and (contexts.dm_channel or contexts.private_channel):
        return False
    return bool(getattr(root, "guild_only", False))


class TTSCommandTree(app_commands.CommandTree[Any]):
    """The one place a command's failure becomes a member's message: expected errors get
    their own line, anything else a short reference id that the log line carries too."""

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        """Refuse guild-only commands outside a server before they run (nothing is spent)."""
        if interaction.guild_id is None and requires_guild(interaction.command):
            raise app_commands.NoPrivateMessage()
        return True

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        message, ref = describe_error(error, locale=locale_of(interaction))
        command = interaction.command.qualified_name if interaction.command else "?"
        if ref is not None:
            original = getattr(error, "original", error)
            log.error(
                "Unexpected error ref=%s in /%s (guild %s, user %s)",
                ref,
                command,
                interaction.guild_id,
                interaction.user.id if interaction.user else None,
                exc_info=(type(original), original, original.__traceback__),
            )
            # The bot (`TTSBot.report_unexpected`) tells the operator; a bare client cannot.
            report = getattr(self.client, "report_unexpected", None)
            if callable(report):
                report(f"/{command}", ref, original)
        else:
            log.debug("/%s refused: %s", command, message)
        await send_error(interaction, message)
