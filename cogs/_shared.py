"""Discord-to-core translations shared by the cogs (private: not an extension)."""

from __future__ import annotations

import discord

from bot.access import Caller


def caller_of(user: discord.User | discord.Member, guild_id: int | None) -> Caller:
    """The core's view of a member: id, server, roles, and whether they manage the server."""
    if isinstance(user, discord.Member):
        return Caller(
            user_id=user.id,
            guild_id=guild_id,
            role_ids=frozenset(role.id for role in user.roles),
            manager=user.guild_permissions.manage_guild,
        )
    return Caller(user_id=user.id, guild_id=guild_id)
