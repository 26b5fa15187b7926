"""The one interface cogs use, so the SQLite and PostgreSQL backends are interchangeable."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Protocol

from bot.storage.models import GuildSettings, MemberSettings, UsageRecord, UsageSummary

__all__ = ["Storage"]


class Storage(Protocol):
    """Settings and usage behind async calls. Updates are partial and atomic: concurrent updates
    of different fields never undo each other. Bad names or values raise ValueError."""

    async def connect(self) -> None:
        """Open the database and bring its schema up to date."""

    async def close(self) -> None: ...

    async def get_member(self, user_id: int) -> MemberSettings:
        """The member's settings, or the defaults when they never chose anything."""

    async def update_member(self, user_id: int, /, **changes: Any) -> MemberSettings:
        """Change only the given fields; None clears one. Returns the stored result."""

    async def reset_member(self, user_id: int) -> None: ...

    async def get_guild(self, guild_id: int) -> GuildSettings: ...

    async def update_guild(self, guild_id: int, /, **changes: Any) -> GuildSettings:
        """Change only the given fields. Returns the stored result."""

    async def record_usage(self, record: UsageRecord) -> None: ...

    async def usage(
        self, *, since: datetime, guild_id: int | None = None, user_id: int | None = None
    ) -> UsageSummary:
        """Totals from `since` on; a None filter means every server or every member."""

    async def top_users(
        self, guild_id: int, since: datetime, limit: int = 5
    ) -> list[tuple[int, UsageSummary]]:
        """The server's busiest members from `since` on, most requests first."""

    async def daily_usage(self, guild_id: int, since: datetime) -> list[tuple[date, UsageSummary]]:
        """The server's totals for each UTC day from `since` on that had any use, oldest first
        (days without any are left out)."""

    async def forget_member(self, user_id: int) -> int:
        """Delete the member's settings and usage everywhere (/forget-me); returns rows deleted."""

    async def schema_version(self) -> int: ...
