"""Inspecting the configured database for `python -m bot check`: its schema version, whether
the bot could write it, and a newer bot's database refused, all without creating, migrating
or leaving anything in it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from bot.config import Settings
from bot.errors import DatabaseFileError, NewerDatabaseError, StorageError
from bot.storage import migrations, open_storage, pg_migrations, probe
from bot.storage.probe import inspect_storage
from tests.servers import free_port

SECRET = "hunter2-probe-SECRET"


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master")}


async def test_a_missing_sqlite_file_is_reported_and_not_created(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(data_dir=tmp_path / "data")
    state = await inspect_storage(settings)
    assert (state.backend, state.version) == ("SQLite", None)
    assert state.where == str(tmp_path / "data" / "bot.db")
    assert not (tmp_path / "data").exists()


async def test_an_older_sqlite_schema_is_reported_and_left_as_it_is(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "bot.db"
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await migrations.migrate(db, target=2)
    before = _tables(path)
    state = await inspect_storage(make_settings(database_url=f"sqlite:///{path}"))
    assert (state.version, state.latest) == (2, migrations.LATEST_VERSION)
    assert not state.busy
    assert _tables(path) == before  # The write test was rolled back.
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2


async def test_a_current_sqlite_database_is_current(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(data_dir=tmp_path)
    await (await open_storage(settings)).close()
    state = await inspect_storage(settings)
    assert state.version == state.latest == migrations.LATEST_VERSION


async def test_a_newer_bots_sqlite_database_is_refused(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "bot.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {migrations.LATEST_VERSION + 1}")
    with pytest.raises(NewerDatabaseError, match="newer version of the bot"):
        await inspect_storage(make_settings(database_url=f"sqlite:///{path}"))


async def test_a_file_that_is_no_database_is_named(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "bot.db"
    path.write_bytes(b"not a database at all, just some text " * 100)
    with pytest.raises(DatabaseFileError, match=f"The SQLite database {path} cannot be used"):
        await inspect_storage(make_settings(database_url=f"sqlite:///{path}"))


async def test_a_database_a_running_bot_is_writing_is_busy_not_broken(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probe, "BUSY_WAIT", 0.05)
    settings = make_settings(data_dir=tmp_path)
    await (await open_storage(settings)).close()
    writer = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        state = await inspect_storage(settings)
    finally:
        writer.close()
    assert state.busy
    assert state.version == migrations.LATEST_VERSION


async def test_postgresql_versions_are_read_without_migrating(
    make_settings: Callable[..., Settings], postgres_url: str
) -> None:
    settings = make_settings(database_url=postgres_url)
    fresh = await inspect_storage(settings)
    assert (fresh.backend, fresh.version) == ("PostgreSQL", 0)
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await pg_migrations.schema_version(conn) == 0  # Still untouched.
    finally:
        await conn.close()
    await (await open_storage(settings)).close()
    state = await inspect_storage(settings)
    assert state.version == state.latest == pg_migrations.LATEST_VERSION


async def test_an_unreachable_postgresql_is_named_without_its_password(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    settings = make_settings(database_url=f"postgresql://bot:{SECRET}@127.0.0.1:{port}/tts")
    with pytest.raises(
        StorageError, match=f"Could not connect to PostgreSQL at bot@127.0.0.1:{port}/tts"
    ) as info:
        await inspect_storage(settings)
    assert SECRET not in str(info.value)
