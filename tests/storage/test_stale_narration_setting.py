"""How old a waiting narration message may get before it is skipped, on every backend: stored and
read back, refused with words an admin understands when out of range, reset with the server's
narration settings, and given to servers that existed before the setting did."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest

from bot.storage import GuildSettings, Storage, migrations, pg_migrations
from bot.storage.models import DEFAULT_STALE_AFTER
from bot.storage.validation import MAX_STALE_AFTER, MIN_STALE_AFTER
from tests.storage.backends import Backend

#: The schema version just before the setting existed.
BEFORE = 4


def test_the_default_is_five_minutes() -> None:
    assert GuildSettings.defaults(1).narration_stale_after == DEFAULT_STALE_AFTER == 300


@pytest.mark.parametrize("seconds", [0, MIN_STALE_AFTER, 600, MAX_STALE_AFTER])
async def test_the_bound_round_trips(storage: Storage, seconds: int) -> None:
    saved = await storage.update_guild(5, narration_stale_after=seconds)
    assert saved == dataclasses.replace(GuildSettings.defaults(5), narration_stale_after=seconds)
    assert await storage.get_guild(5) == saved
    assert (await storage.get_guild(6)).narration_stale_after == DEFAULT_STALE_AFTER


async def test_it_is_kept_when_other_settings_change_and_reset_on_its_own(
    storage: Storage,
) -> None:
    await storage.update_guild(5, narration_stale_after=0)
    changed = await storage.update_guild(5, narration_merge_speakers=True, daily_quota=3)
    assert changed.narration_stale_after == 0
    reset = await storage.update_guild(5, narration_stale_after=DEFAULT_STALE_AFTER)
    assert (reset.narration_stale_after, reset.narration_merge_speakers) == (300, True)


@pytest.mark.parametrize(
    "value",
    [-1, 1, 30, MIN_STALE_AFTER - 1, MAX_STALE_AFTER + 1, 10**12, 300.0, "300", None, True],
)
async def test_out_of_range_or_not_whole_seconds_are_refused_and_nothing_changes(
    storage: Storage, value: Any
) -> None:
    await storage.update_guild(5, narration_stale_after=600)
    message = (
        "narration_stale_after must be 0 (never skip) or a whole number of seconds "
        "from 60 to 3,600 (1 to 60 minutes)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        await storage.update_guild(5, narration_skip_silent=True, narration_stale_after=value)
    stored = await storage.get_guild(5)
    assert (stored.narration_stale_after, stored.narration_skip_silent) == (600, False)


async def _migrate_to(backend: Backend, version: int, *statements: str) -> None:
    """Bring a new database to `version` only, as an older bot left it, and add rows."""
    if backend.name == "sqlite":
        Path(backend.target).parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(backend.target, isolation_level=None) as db:
            assert await migrations.migrate(db, target=version) == version
            for statement in statements:
                await db.execute(statement)
        return
    conn = await asyncpg.connect(backend.target)
    try:
        assert await pg_migrations.migrate(conn, target=version) == version
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_servers_from_before_the_setting_keep_their_rows_and_get_the_default(
    backend: Backend,
) -> None:
    on = "TRUE" if backend.name == "postgres" else "1"
    await _migrate_to(
        backend,
        BEFORE,
        "INSERT INTO guild_settings (guild_id, narration_channel_id, daily_quota,"
        f" narration_merge_speakers, narration_said) VALUES (2, 77, 15, {on}, '{{name}} says')",
    )
    async with backend.open() as storage:
        assert await storage.schema_version() == migrations.LATEST_VERSION > BEFORE
        guild = await storage.get_guild(2)
        assert guild == dataclasses.replace(
            GuildSettings.defaults(2),
            narration_channel_id=77,
            daily_quota=15,
            narration_merge_speakers=True,
            narration_said="{name} says",
        )
        assert guild.narration_stale_after == DEFAULT_STALE_AFTER
        # And the new column takes writes like any other.
        assert (await storage.update_guild(2, narration_stale_after=0)).narration_stale_after == 0
        assert (await storage.get_guild(2)).daily_quota == 15
