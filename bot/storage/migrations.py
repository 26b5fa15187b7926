"""The schema's history. Each step runs once, in its own transaction, and `PRAGMA user_version`
records how far a database has come, so upgrading the bot upgrades its data in place.

Never edit a released step: add a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import suppress
from typing import NamedTuple

import aiosqlite

from bot.errors import NewerDatabaseError

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "migrate",
    "refuse_newer",
    "rollback",
    "schema_version",
    "statements",
]


class Migration(NamedTuple):
    version: int
    description: str
    script: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "member and server settings",
        """
        CREATE TABLE member_settings (
            user_id INTEGER PRIMARY KEY,
            voice TEXT,
            temperature REAL,
            style TEXT
        );
        CREATE TABLE guild_settings (
            guild_id INTEGER PRIMARY KEY,
            narration_channel_id INTEGER,
            narration_voice_only INTEGER NOT NULL DEFAULT 1,
            narration_skip_prefix TEXT NOT NULL DEFAULT ';',
            narration_max_length INTEGER NOT NULL DEFAULT 300,
            narration_emoji TEXT NOT NULL DEFAULT 'name'
                CHECK (narration_emoji IN ('name', 'drop')),
            narration_say_names INTEGER NOT NULL DEFAULT 1,
            max_text_length INTEGER,
            user_cooldown REAL,
            daily_quota INTEGER,
            allowed_role_id INTEGER,
            allow_files INTEGER NOT NULL DEFAULT 1,
            allow_voice INTEGER NOT NULL DEFAULT 1
        );
        """,
    ),
    Migration(
        2,
        "usage accounting",
        # No text column, ever: members' words are not kept.
        """
        CREATE TABLE usage (
            id INTEGER PRIMARY KEY,
            guild_id INTEGER,
            user_id INTEGER NOT NULL,
            at REAL NOT NULL,
            status INTEGER,
            latency REAL NOT NULL,
            audio_seconds REAL NOT NULL,
            cost REAL NOT NULL,
            cached INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX usage_guild_at ON usage (guild_id, at);
        CREATE INDEX usage_user_at ON usage (user_id, at);
        """,
    ),
    Migration(
        3,
        "narration can skip @silent messages",
        """
        ALTER TABLE guild_settings
            ADD COLUMN narration_skip_silent INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    Migration(
        4,
        "voice messages, spoken names, the said wording, merging and a server dictionary",
        """
        ALTER TABLE member_settings ADD COLUMN voice_message INTEGER;
        ALTER TABLE member_settings ADD COLUMN spoken_name TEXT;
        ALTER TABLE guild_settings ADD COLUMN narration_said TEXT;
        ALTER TABLE guild_settings
            ADD COLUMN narration_merge_speakers INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE guild_settings ADD COLUMN pronunciations TEXT NOT NULL DEFAULT '[]';
        """,
    ),
    Migration(
        5,
        "narration skips messages that waited too long",
        # 300 s is models.DEFAULT_STALE_AFTER when this step was written; a literal, because a
        # released step must not change with the code.
        """
        ALTER TABLE guild_settings
            ADD COLUMN narration_stale_after INTEGER NOT NULL DEFAULT 300;
        """,
    ),
    Migration(
        6,
        "members' choices: not being narrated, a pace, a second voice; a server's stage, "
        "prefix and repeated-character rules and its default pace",
        # 3 is speech.cleanup's repeat bound when this step was written; a literal, as above.
        """
        ALTER TABLE member_settings ADD COLUMN narrate_me INTEGER;
        ALTER TABLE member_settings ADD COLUMN pace TEXT;
        ALTER TABLE member_settings ADD COLUMN voice_2 TEXT;
        ALTER TABLE guild_settings
            ADD COLUMN narration_ignore_stage_audience INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE guild_settings
            ADD COLUMN narration_require_prefix TEXT NOT NULL DEFAULT '';
        ALTER TABLE guild_settings
            ADD COLUMN narration_max_repeat INTEGER NOT NULL DEFAULT 3;
        ALTER TABLE guild_settings ADD COLUMN pace TEXT;
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


async def schema_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate(db: aiosqlite.Connection, target: int = LATEST_VERSION) -> int:
    """Apply the missing steps up to `target` and return the version reached.

    `db` must be in autocommit mode (isolation_level=None): each step opens its own
    `BEGIN IMMEDIATE`, so a second process starting at the same time waits, then skips the
    steps the first one applied.
    """
    found = await schema_version(db)
    refuse_newer(found)
    for step in MIGRATIONS:
        if step.version <= found:
            continue
        if step.version > target:
            break
        await db.execute("BEGIN IMMEDIATE")
        try:
            current = await schema_version(db)  # Again, now that no one else can write.
            refuse_newer(current)
            if current < step.version:
                # executescript() would commit first, so run statement by statement.
                for statement in statements(step.script):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {step.version:d}")
            await db.execute("COMMIT")
        except BaseException:
            await rollback(db)
            raise
    return await schema_version(db)


async def rollback(db: aiosqlite.Connection) -> None:
    """Undo the open transaction, if any: after a failed or cancelled COMMIT there may be none,
    and that must not hide the original error."""
    with suppress(sqlite3.Error):
        await db.execute("ROLLBACK")


def refuse_newer(version: int, latest: int | None = None) -> None:
    """Stop before touching a database a newer bot wrote: its schema may mean things this code
    would corrupt. Every backend refuses with the same words."""
    latest = LATEST_VERSION if latest is None else latest
    if version > latest:
        raise NewerDatabaseError(
            f"The database is from a newer version of the bot (schema version {version}; this "
            f"version knows up to {latest}). Upgrade the bot, or restore the backup "
            "made before the upgrade."
        )


def statements(script: str) -> Iterator[str]:
    """Split a script into statements; `complete_statement` keeps `;` inside strings intact."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                yield pending.strip()
            pending = ""
    if pending.strip(" \n\t;"):
        raise ValueError(f"Incomplete SQL statement in migration: {pending.strip()[:60]}")
