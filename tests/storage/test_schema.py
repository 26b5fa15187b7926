"""The database itself: SQLite's migrations, WAL and the privacy of the usage table (PostgreSQL's
are in test_postgres.py), choosing the backend from DATABASE_URL, and, on both backends, two
openers migrating at once and a second process writing at the same time."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import pytest

from bot.config import Settings
from bot.errors import DatabaseURLError, NewerDatabaseError, SettingsError
from bot.storage import (
    MemberSettings,
    SQLiteStorage,
    UsageRecord,
    migrations,
    open_storage,
    sqlite_path,
)
from bot.storage.migrations import LATEST_VERSION, MIGRATIONS, Migration, migrate, statements
from tests.storage.backends import Backend

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_migrations_are_numbered_one_by_one() -> None:
    assert [step.version for step in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert LATEST_VERSION == 6
    assert all(step.description and step.script.strip() for step in MIGRATIONS)


def test_scripts_split_on_semicolons_outside_strings() -> None:
    script = "CREATE TABLE a (x TEXT DEFAULT ';');\nINSERT INTO a VALUES ('1;2');\n  "
    assert list(statements(script)) == [
        "CREATE TABLE a (x TEXT DEFAULT ';');",
        "INSERT INTO a VALUES ('1;2');",
    ]
    with pytest.raises(ValueError, match="Incomplete"):
        list(statements("INSERT INTO a VALUES ('unclosed;"))


async def test_a_new_file_gets_the_latest_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "bot.db"
    async with SQLiteStorage(path) as storage:
        assert await storage.schema_version() == LATEST_VERSION
        db = storage._connection()
        async with db.execute("PRAGMA busy_timeout") as cursor:
            assert (await cursor.fetchone() or [0])[0] >= 1000
        async with db.execute("PRAGMA synchronous") as cursor:
            assert (await cursor.fetchone() or [0])[0] == 1  # NORMAL
        async with db.execute("PRAGMA foreign_keys") as cursor:
            assert (await cursor.fetchone() or [0])[0] == 1
    assert {"member_settings", "guild_settings", "usage"} <= _tables(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {row[1] for row in raw.execute("PRAGMA index_list(usage)")}
    assert {"usage_guild_at", "usage_user_at"} <= indexes


async def test_an_empty_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    path.touch()
    async with SQLiteStorage(path) as storage:
        assert await storage.schema_version() == LATEST_VERSION
    assert _user_version(path) == LATEST_VERSION


async def test_the_usage_table_has_no_room_for_text(tmp_path: Path) -> None:
    """Privacy: what members say is never stored, so no column could hold it."""
    path = tmp_path / "bot.db"
    async with SQLiteStorage(path):
        pass
    with sqlite3.connect(path) as db:
        columns = {row[1]: row[2].upper() for row in db.execute("PRAGMA table_info(usage)")}
    assert set(columns) == {
        "id",
        "guild_id",
        "user_id",
        "at",
        "status",
        "latency",
        "audio_seconds",
        "cost",
        "cached",
    }
    assert "TEXT" not in columns.values()


async def test_a_v1_database_is_upgraded_with_its_rows_intact(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with aiosqlite.connect(path, isolation_level=None) as db:
        assert await migrate(db, target=1) == 1
        await db.execute(
            "INSERT INTO member_settings (user_id, voice, temperature, style)"
            " VALUES (1, 'Kore', 0.9, 'calm')"
        )
        await db.execute("INSERT INTO guild_settings (guild_id, daily_quota) VALUES (2, 15)")
    assert "usage" not in _tables(path)

    async with SQLiteStorage(path) as storage:
        assert await storage.schema_version() == LATEST_VERSION
        assert await storage.get_member(1) == MemberSettings(1, "Kore", 0.9, "calm")
        guild = await storage.get_guild(2)
        assert (guild.daily_quota, guild.narration_emoji, guild.allow_files) == (15, "name", True)
        await storage.record_usage(UsageRecord(2, 1, NOW, 200, 1.0, 3.0, 0.005))
        assert (await storage.usage(since=NOW, guild_id=2)).calls == 1


async def test_a_database_from_a_newer_bot_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    storage = SQLiteStorage(path)
    with pytest.raises(NewerDatabaseError, match="database is from a newer version of the bot"):
        await storage.connect()
    assert _user_version(path) == LATEST_VERSION + 1
    assert _tables(path) == set()
    with pytest.raises(NewerDatabaseError):
        await storage.connect()  # Still refused: nothing half-opened.


async def test_a_failing_step_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bot.db"
    async with SQLiteStorage(path):
        pass
    step = LATEST_VERSION + 1
    broken = Migration(
        step, "broken", "CREATE TABLE half (x INTEGER); INSERT INTO nowhere VALUES (1);"
    )
    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, broken))
    monkeypatch.setattr(migrations, "LATEST_VERSION", step)
    async with aiosqlite.connect(path, isolation_level=None) as db:
        with pytest.raises(sqlite3.OperationalError, match="nowhere"):
            await migrate(db, target=step)
        assert not db.in_transaction
    assert _user_version(path) == LATEST_VERSION
    assert "half" not in _tables(path)


async def test_two_storages_opening_a_new_database_at_once_migrate_it_once(
    backend: Backend,
) -> None:
    first, second = backend.open(), backend.open()
    await asyncio.gather(first.connect(), second.connect())
    try:
        assert await first.schema_version() == await second.schema_version() == LATEST_VERSION
    finally:
        await first.close()
        await second.close()


_WRITER = """
import asyncio
from datetime import UTC, datetime
from bot.storage import UsageRecord
from tests.storage.backends import open_from_env

async def main():
    async with open_from_env() as storage:
        print("ready", flush=True)
        await asyncio.gather(*(
            storage.record_usage(UsageRecord(1, 2, datetime.now(UTC), 200, 1.0, 1.0, 0.005))
            for _ in range(150)
        ))
        await storage.update_member(7, voice="Puck")

asyncio.run(main())
"""


async def test_another_process_writing_at_the_same_time_loses_nothing(backend: Backend) -> None:
    async with backend.open() as storage:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WRITER,
            env=backend.child_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            assert await asyncio.wait_for(child.stdout.readline(), timeout=30) == b"ready\n"
            await asyncio.gather(
                *(
                    storage.record_usage(UsageRecord(1, 3, NOW, 200, 1.0, 1.0, 0.005))
                    for _ in range(150)
                ),
                *(storage.update_member(7, temperature=0.8) for _ in range(5)),
            )
            _, err = await asyncio.wait_for(child.communicate(), timeout=30)
            assert child.returncode == 0, err.decode()
            assert (await storage.usage(since=datetime(2000, 1, 1, tzinfo=UTC))).calls == 300
            assert await storage.get_member(7) == MemberSettings(7, "Puck", 0.8)
        finally:
            if child.returncode is None:  # A failed assertion must not leak the process.
                child.kill()
                await child.wait()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "data-dir/bot.db"),
        ("  ", "data-dir/bot.db"),
        ("sqlite://", "data-dir/bot.db"),
        ("sqlite:///elsewhere/tts.db", "elsewhere/tts.db"),
        ("SQLite:///x.db", "x.db"),
        ("sqlite:////srv/bot/tts.db", "/srv/bot/tts.db"),
    ],
)
def test_the_sqlite_file_comes_from_database_url(
    make_settings: Callable[..., Settings], url: str, expected: str
) -> None:
    settings = make_settings(database_url=url, data_dir="data-dir")
    assert sqlite_path(settings) == Path(expected)


def test_a_postgresql_url_has_no_sqlite_file_and_is_not_echoed(
    make_settings: Callable[..., Settings],
) -> None:
    for url in ("postgresql://bot:hunter2@db/bot", "postgres://bot:hunter2@db/bot"):
        with pytest.raises(DatabaseURLError) as info:
            sqlite_path(make_settings(database_url=url))
        assert "names a PostgreSQL server, not a SQLite file" in str(info.value)
        assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url", ["mysql://u:pw@h/db", "bot.db", "sqlite://host/bot.db"])
def test_other_urls_are_refused(make_settings: Callable[..., Settings], url: str) -> None:
    """Refused with the settings, before any command runs; and by `sqlite_path` itself, for
    settings built without validation."""
    with pytest.raises(SettingsError, match="DATABASE_URL: not a database URL") as refused:
        make_settings(database_url=url)
    assert "pw" not in str(refused.value)
    unchecked = make_settings().model_copy(update={"database_url": url})
    with pytest.raises(DatabaseURLError, match="DATABASE_URL is not a database URL") as info:
        sqlite_path(unchecked)
    assert "pw" not in str(info.value)


async def test_open_storage_connects_the_configured_file(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    storage = await open_storage(make_settings(data_dir=tmp_path / "data"))
    try:
        await storage.update_member(1, voice="Puck")
        assert await storage.schema_version() == LATEST_VERSION
    finally:
        await storage.close()
    assert (tmp_path / "data" / "bot.db").is_file()
