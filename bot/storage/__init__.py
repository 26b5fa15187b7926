"""Where the bot remembers member and server settings and usage.

Cogs see only `Storage` and the plain dataclasses; `open_storage` picks the backend.
"""

from __future__ import annotations

from bot.storage.base import Storage
from bot.storage.factory import open_storage, sqlite_path
from bot.storage.models import (
    DEFAULT_MAX_REPEAT,
    DEFAULT_SAID,
    GuildSettings,
    MemberSettings,
    NarrationEmoji,
    UsageRecord,
    UsageSummary,
)
from bot.storage.postgres import PostgresStorage
from bot.storage.sqlite import SQLiteStorage

__all__ = [
    "DEFAULT_MAX_REPEAT",
    "DEFAULT_SAID",
    "GuildSettings",
    "MemberSettings",
    "NarrationEmoji",
    "PostgresStorage",
    "SQLiteStorage",
    "Storage",
    "UsageRecord",
    "UsageSummary",
    "open_storage",
    "sqlite_path",
]
