"""The command's answer after the fact: how long it may still be edited, editing it when its
interaction token may have expired, and saying in the channel what can no longer go in it
(private helpers for the extensions: not an extension)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import discord

from bot.synthesis.deadline import DELIVERY_MARGIN
from bot.tree import NO_MENTIONS

__all__ = [
    "INVALID_WEBHOOK_TOKEN",
    "TOKEN_LIFETIME",
    "UNKNOWN_WEBHOOK",
    "edit_answer",
    "only_mentioning",
    "reply_window",
    "tell_in_channel",
    "token_expired",
]

log = logging.getLogger(__name__)

#: Seconds an interaction token can edit its reply.
TOKEN_LIFETIME = 15 * 60
#: Discord's error codes for an expired (or unknown) interaction token.
INVALID_WEBHOOK_TOKEN = 50027
UNKNOWN_WEBHOOK = 10015


def reply_window(interaction: discord.Interaction[Any]) -> float:
    """Seconds left to make a chat reply: the token's 15 minutes from the interaction, less
    the time kept for joining and uploading the file."""
    expires = interaction.created_at + timedelta(seconds=TOKEN_LIFETIME)
    left = (expires - datetime.now(UTC)).total_seconds()
    return max(0.0, left - DELIVERY_MARGIN)


def token_expired(error: discord.HTTPException) -> bool:
    """Discord's answer to a webhook call with an expired interaction token: 401 (50027
    Invalid Webhook Token), or 404 10015 Unknown Webhook."""
    return error.code in (INVALID_WEBHOOK_TOKEN, UNKNOWN_WEBHOOK) or error.status == 401


def only_mentioning(user: discord.abc.User) -> discord.AllowedMentions:
    return discord.AllowedMentions(everyone=False, roles=False, users=[user], replied_user=False)


async def edit_answer(interaction: discord.Interaction[Any], content: str, **fields: Any) -> bool:
    """Edit the command's answer; False when its token has expired. A request that waited in
    a long queue outlives the token's 15 minutes: that is expected, not an error."""
    try:
        await interaction.edit_original_response(
            content=content, allowed_mentions=NO_MENTIONS, **fields
        )
    except discord.HTTPException as exc:
        if not token_expired(exc):
            raise
        log.info(
            "Interaction token expired (%s %s); the answer stays as it was", exc.status, exc.code
        )
        return False
    return True


async def tell_in_channel(interaction: discord.Interaction[Any], line: str) -> None:
    """What a member should still hear after the answer can no longer be edited: said in the
    channel, naming (and pinging) only them."""
    channel = interaction.channel
    if not isinstance(channel, discord.abc.Messageable):
        return
    user = interaction.user
    try:
        await channel.send(f"{user.mention} {line}", allowed_mentions=only_mentioning(user))
    except discord.HTTPException as exc:
        log.info("Could not tell user %s in the channel: %s", user.id, exc)
