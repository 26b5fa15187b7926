"""The same schema history as `migrations`, in PostgreSQL's dialect: the same version numbers and
descriptions, so a version means the same tables and columns whichever backend holds them.

Where SQLite has no such type, PostgreSQL gets the real one: BIGINT for Discord ids (INTEGER is
32-bit here), DOUBLE PRECISION for REAL (a 4-byte float here), BOOLEAN for flags and TIMESTAMPTZ
for the usage time. The version lives in `schema_migrations`, one row per applied step.

Never edit a released step: add a new one, to both dialects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from bot.storage.migrations import Migration, refuse_newer

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    #: A plain connection (tests) or one borrowed from the storage's pool.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

__all__ = [
    "LATEST_VERSION",
    "LOCK_KEY",
    "MIGRATIONS",
    "VERSION_TABLE",
    "migrate",
    "schema_version",
]

#: An advisory lock only migrations take (advisory locks are per database), so processes
#: starting together apply each step once, one after the other.
LOCK_KEY = 0x7474_5F62_6F74  # "tts_bot"

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "member and server settings",
        """
        CREATE TABLE member_settings (
            user_id BIGINT PRIMARY KEY,
            voice TEXT,
            temperature DOUBLE PRECISION,
            style TEXT
        );
        CREATE TABLE guild_settings (
            guild_id BIGINT PRIMARY KEY,
            narration_channel_id BIGINT,
            narration_voice_only BOOLEAN NOT NULL DEFAULT TRUE,
            narration_skip_prefix TEXT NOT NULL DEFAULT ';',
            narration_max_length INTEGER NOT NULL DEFAULT 300,
            narration_emoji TEXT NOT NULL DEFAULT 'name'
                CHECK (narration_emoji IN ('name', 'drop')),
            narration_say_names BOOLEAN NOT NULL DEFAULT TRUE,
            max_text_length INTEGER,
            user_cooldown DOUBLE PRECISION,
            daily_quota INTEGER,
            allowed_role_id BIGINT,
            allow_files BOOLEAN NOT NULL DEFAULT TRUE,
            allow_voice BOOLEAN NOT NULL DEFAULT TRUE
        );
        """,
    ),
    Migration(
        2,
        "usage accounting",
        # No text column, ever: members' words are not kept.
        """
        CREATE TABLE usage (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            guild_id BIGINT,
            user_id BIGINT NOT NULL,
            at TIMESTAMPTZ NOT NULL,
            status INTEGER,
            latency DOUBLE PRECISION NOT NULL,
            audio_seconds DOUBLE PRECISION NOT NULL,
            cost DOUBLE PRECISION NOT NULL,
            cached BOOLEAN NOT NULL DEFAULT FALSE
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
            ADD COLUMN narration_skip_silent BOOLEAN NOT NULL DEFAULT FALSE;
        """,
    ),
    Migration(
        4,
        "voice messages, spoken names, the said wording, merging and a server dictionary",
        """
        ALTER TABLE member_settings ADD COLUMN voice_message BOOLEAN;
        ALTER TABLE member_settings ADD COLUMN spoken_name TEXT;
        ALTER TABLE guild_settings ADD COLUMN narration_said TEXT;
        ALTER TABLE guild_settings
            ADD COLUMN narration_merge_speakers BOOLEAN NOT NULL DEFAULT FALSE;
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
        ALTER TABLE member_settings ADD COLUMN narrate_me BOOLEAN;
        ALTER TABLE member_settings ADD COLUMN pace TEXT;
        ALTER TABLE member_settings ADD COLUMN voice_2 TEXT;
        ALTER TABLE guild_settings
            ADD COLUMN narration_ignore_stage_audience BOOLEAN NOT NULL DEFAULT FALSE;
        ALTER TABLE guild_settings
            ADD COLUMN narration_require_prefix TEXT NOT NULL DEFAULT '';
        ALTER TABLE guild_settings
            ADD COLUMN narration_max_repeat INTEGER NOT NULL DEFAULT 3;
        ALTER TABLE guild_settings ADD COLUMN pace TEXT;
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


async def schema_version(conn: Connection) -> int:
    """The highest step applied; 0 for a database the bot never touched."""
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))


async def migrate(conn: Connection, target: int | None = None) -> int:
    """Apply the missing steps up to `target` (the latest by default), each in its own
    transaction, and return the version reached.

    A database already up to date is only read. Otherwise each step takes the advisory lock and
    reads the version again, so a second process starting at the same time waits, then skips
    what the first one applied; DDL is transactional here, so a failing step leaves nothing.
    """
    target = LATEST_VERSION if target is None else target
    found = await schema_version(conn)
    refuse_newer(found, LATEST_VERSION)
    for step in MIGRATIONS:
        if step.version <= found:
            continue
        if step.version > target:
            break
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            await conn.execute(VERSION_TABLE)
            current = await schema_version(conn)  # Again, now that no one else migrates.
            refuse_newer(current, LATEST_VERSION)
            if current < step.version:
                await conn.execute(step.script)  # No arguments: several statements may run.
                await conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                    step.version,
                    step.description,
                )
    return await schema_version(conn)
