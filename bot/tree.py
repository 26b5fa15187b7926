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

__all__ = ["NO_MENTIONS", "TTSCommandTree", "describe_error", "requires_guild", "send_error"]

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()


def describe_error(error: BaseException, *, now: datetime | None = None) -> tuple[str, str | None]:
    """The message for a member, and a reference id when the error was unexpected."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, CooldownError):
        moment = (now or datetime.now(UTC)) + timedelta(seconds=error.retry_after)
        return f"You're on cooldown; try again {discord.utils.format_dt(moment, 'R')}.", None
    if isinstance(error, QuotaExceededError):
        reset = datetime.fromtimestamp(error.reset_at, UTC)
        return error.message(discord.utils.format_dt(reset, "R")), None
    if isinstance(error, BotError):
        return error.user_message, None
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down; try again in {error.retry_after:.0f} s.", None
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works only in a server.", None
    if isinstance(error, app_commands.MissingPermissions):
        needed = ", ".join(p.replace("_", " ").title() for p in error.missing_permissions)
        return f"You need the {needed} permission to do that.", None
    if isinstance(error, app_commands.BotMissingPermissions):
        needed = ", ".join(p.replace("_", " ").title() for p in error.missing_permissions)
        return f"I need the {needed} permission here to do that.", None
    if isinstance(error, app_commands.TransformerError):
        return f"“{error.value}” is not a valid value for that option.", None
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here.", None
    ref = secrets.token_hex(3)
    return f"Something went wrong on my side (ref `{ref}`). The bot's owner can look it up.", ref


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
        message, ref = describe_error(error)
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
