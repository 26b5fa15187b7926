"""Who may use the bot, and how much: a server's role, file/voice switches and daily quota."""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import AccessDeniedError
from bot.locales import line
from bot.storage import GuildSettings

__all__ = ["Caller", "Requester", "check_access"]


@dataclass(frozen=True, slots=True)
class Caller:
    """The member asking, as the core needs them: no Discord types."""

    user_id: int
    guild_id: int | None = None
    role_ids: frozenset[int] = frozenset()
    #: Has Manage Server: server rules about roles do not lock managers out.
    manager: bool = False


@dataclass(frozen=True, slots=True)
class Requester:
    """Who a call is for and how it is paced: the one value every layer below the cogs takes
    instead of a user id, a server id and cooldown switches threaded through each signature.
    """

    user_id: int
    #: The server the request is made in, for usage accounting; None in a DM or the terminal.
    guild_id: int | None = None
    #: Seconds before the member may ask again. None: the operator's USER_COOLDOWN; 0: none at
    #: all (narration reads every message).
    cooldown: float | None = None
    #: Whether the member's cap on calls waiting (MAX_WAITING_PER_USER) refuses this one.
    #: Narration is not capped per member: in a lively channel a member's messages interleave
    #: with others' and cannot all merge, and a refused message is a lost word. Its bounds
    #: are the server's voice queue (VOICE_MAX_QUEUE) and the global queue cap instead, and
    #: the scheduler's round-robin still keeps one member from starving the rest.
    capped: bool = True


def check_access(caller: Caller, guild: GuildSettings | None, *, voice: bool) -> None:
    """Raise AccessDeniedError if the server's rules refuse this request (free to check)."""
    if guild is None:
        return
    role = guild.allowed_role_id
    if role is not None and not caller.manager and role not in caller.role_ids:
        raise AccessDeniedError(line("access.role", role=f"<@&{role}>"))
    if voice and not guild.allow_voice:
        raise AccessDeniedError(line("access.no_voice"))
    if not voice and not guild.allow_files:
        raise AccessDeniedError(
            line("access.no_files") if guild.allow_voice else line("access.off")
        )
