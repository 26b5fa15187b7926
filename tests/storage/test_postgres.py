"""What only PostgreSQL has: its dialect of the migrations (kept in step with SQLite's), the
version table and its advisory lock, connection errors that never show the password, a server
that drops connections, and DATABASE_URL choosing it. The behaviour both backends share is
tested on both in test_storage.py, test_usage.py and test_schema.py."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from bot.config import Settings
from bot.errors import DatabaseURLError, NewerDatabaseError, StorageError
from bot.storage import (
    MemberSettings,
    PostgresStorage,
    SQLiteStorage,
    UsageRecord,
    migrations,
    open_storage,
    pg_migrations,
)
from bot.storage.migrations import Migration
from bot.storage.pg_migrations import LATEST_VERSION, MIGRATIONS, VERSION_TABLE, migrate
from bot.storage.postgres import describe_url, is_postgres_url
from tests.pg_server import PostgresServer

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SECRET = "hunter2-pg-SECRET"


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
    finally:
        await conn.close()
    return {row[0] for row in rows}


async def _columns(url: str, table: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1",
            table,
        )
    finally:
        await conn.close()
    return {row[0]: row[1] for row in rows}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The schema.


def test_both_dialects_have_the_same_history() -> None:
    assert [(step.version, step.description) for step in MIGRATIONS] == [
        (step.version, step.description) for step in migrations.MIGRATIONS
    ]
    assert LATEST_VERSION == migrations.LATEST_VERSION


async def test_both_backends_have_the_same_tables_and_columns(
    postgres_url: str, tmp_path: Path
) -> None:
    async with PostgresStorage(postgres_url):
        pass
    async with SQLiteStorage(tmp_path / "bot.db"):
        pass
    with sqlite3.connect(tmp_path / "bot.db") as db:
        names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        sqlite_tables = {
            name: {row[1] for row in db.execute(f"PRAGMA table_info({name})")} for name in names
        }
    assert await _tables(postgres_url) == {*sqlite_tables, "schema_migrations"}
    for table, columns in sqlite_tables.items():
        assert set(await _columns(postgres_url, table)) == columns, table


async def test_a_new_database_gets_the_latest_schema(postgres_url: str) -> None:
    async with PostgresStorage(postgres_url) as storage:
        assert await storage.schema_version() == LATEST_VERSION
    conn = await asyncpg.connect(postgres_url)
    try:
        history = await conn.fetch("SELECT version, description FROM schema_migrations")
        indexes = {row[0] for row in await conn.fetch("SELECT indexname FROM pg_indexes")}
    finally:
        await conn.close()
    assert [tuple(row) for row in history] == [(s.version, s.description) for s in MIGRATIONS]
    assert {"usage_guild_at", "usage_user_at"} <= indexes
    guild = await _columns(postgres_url, "guild_settings")
    # Discord ids need 64 bits; flags are real booleans.
    assert guild["guild_id"] == guild["allowed_role_id"] == "bigint"
    assert guild["allow_files"] == "boolean"
    assert (await _columns(postgres_url, "member_settings"))["temperature"] == "double precision"


async def test_the_usage_table_has_no_room_for_text(postgres_url: str) -> None:
    """Privacy: what members say is never stored, so no column could hold it."""
    async with PostgresStorage(postgres_url):
        pass
    columns = await _columns(postgres_url, "usage")
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
    assert not {"text", "character varying", "character"} & set(columns.values())


async def test_a_v1_database_is_upgraded_with_its_rows_intact(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await migrate(conn, target=1) == 1
        await conn.execute(
            "INSERT INTO member_settings (user_id, voice, temperature, style)"
            " VALUES (1, 'Kore', 0.9, 'calm')"
        )
        await conn.execute("INSERT INTO guild_settings (guild_id, daily_quota) VALUES (2, 15)")
    finally:
        await conn.close()
    assert "usage" not in await _tables(postgres_url)

    async with PostgresStorage(postgres_url) as storage:
        assert await storage.schema_version() == LATEST_VERSION
        assert await storage.get_member(1) == MemberSettings(1, "Kore", 0.9, "calm")
        guild = await storage.get_guild(2)
        assert (guild.daily_quota, guild.narration_emoji, guild.allow_files) == (15, "name", True)
        await storage.record_usage(UsageRecord(2, 1, NOW, 200, 1.0, 3.0, 0.005))
        assert (await storage.usage(since=NOW, guild_id=2)).calls == 1


async def test_a_database_from_a_newer_bot_is_refused_untouched(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(VERSION_TABLE)
        await conn.execute(
            "INSERT INTO schema_migrations (version, description) VALUES ($1, 'future')",
            LATEST_VERSION + 1,
        )
    finally:
        await conn.close()
    storage = PostgresStorage(postgres_url)
    with pytest.raises(NewerDatabaseError, match="database is from a newer version of the bot"):
        await storage.connect()
    assert await _tables(postgres_url) == {"schema_migrations"}
    with pytest.raises(NewerDatabaseError):
        await storage.connect()  # Still refused: nothing half-opened.
    with pytest.raises(StorageError, match="not connected"):
        await storage.get_member(1)


async def test_a_failing_step_leaves_the_previous_version(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with PostgresStorage(postgres_url):
        pass
    step = LATEST_VERSION + 1
    broken = Migration(
        step, "broken", "CREATE TABLE half (x INTEGER); INSERT INTO nowhere VALUES (1);"
    )
    monkeypatch.setattr(pg_migrations, "MIGRATIONS", (*MIGRATIONS, broken))
    monkeypatch.setattr(pg_migrations, "LATEST_VERSION", step)
    conn = await asyncpg.connect(postgres_url)
    try:
        with pytest.raises(asyncpg.UndefinedTableError, match="nowhere"):
            await migrate(conn, target=step)
        assert not conn.is_in_transaction()
        assert await pg_migrations.schema_version(conn) == LATEST_VERSION
    finally:
        await conn.close()
    assert "half" not in await _tables(postgres_url)

    with pytest.raises(StorageError, match="could not be brought up to date") as info:
        await PostgresStorage(postgres_url).connect()
    assert "UndefinedTableError" in str(info.value)


async def test_many_processes_starting_at_once_apply_each_step_once(postgres_url: str) -> None:
    storages = [PostgresStorage(postgres_url) for _ in range(6)]
    await asyncio.gather(*(storage.connect() for storage in storages))
    try:
        versions = [await storage.schema_version() for storage in storages]
        assert versions == [LATEST_VERSION] * len(storages)
        await asyncio.gather(*(s.update_guild(1, daily_quota=n) for n, s in enumerate(storages)))
        assert (await storages[0].get_guild(1)).daily_quota in range(len(storages))
    finally:
        await asyncio.gather(*(storage.close() for storage in storages))
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT COUNT(*) FROM schema_migrations") == len(MIGRATIONS)
    finally:
        await conn.close()


# Connections, and the password never shown.


async def test_an_unreachable_server_is_named_without_the_password() -> None:
    port = _closed_port()
    storage = PostgresStorage(f"postgresql://bot:{SECRET}@127.0.0.1:{port}/tts")
    with pytest.raises(StorageError) as info:
        await storage.connect()
    message = str(info.value)
    assert message.startswith(f"Could not connect to PostgreSQL at bot@127.0.0.1:{port}/tts: ")
    assert SECRET not in message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert SECRET not in repr(storage)


@pytest.mark.parametrize("password", ["wrong", "p@ss/w:rd", SECRET])
async def test_a_refused_login_names_the_server_without_any_password(
    postgres_server: PostgresServer, postgres_url: str, password: str
) -> None:
    quoted = password.replace("@", "%40").replace("/", "%2F").replace(":", "%3A")
    url = postgres_url.replace(f":{postgres_server.password}@", f":{quoted}@")
    assert url != postgres_url
    with pytest.raises(StorageError, match="InvalidPasswordError") as info:
        await PostgresStorage(url).connect()
    message = str(info.value)
    assert f"postgres@127.0.0.1:{postgres_server.port}/" in message
    for secret in (password, quoted, postgres_server.password):
        assert secret not in message


async def test_a_missing_database_is_named(postgres_server: PostgresServer) -> None:
    with pytest.raises(StorageError, match=r"/no_such_db: InvalidCatalogNameError") as info:
        await PostgresStorage(postgres_server.url("no_such_db")).connect()
    assert postgres_server.password not in str(info.value)


async def test_dropped_connections_are_replaced(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    async with PostgresStorage(postgres_url) as storage:
        await storage.update_member(1, voice="Puck")
        database = postgres_url.rsplit("/", 1)[1]
        terminated = postgres_server.run(
            lambda conn: conn.fetchval(
                "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid))"
                " FROM pg_stat_activity WHERE datname = $1",
                database,
            )
        )
        assert terminated >= 1
        # Once the client has seen the sockets close, the pool reconnects: no error at all.
        await asyncio.sleep(0.3)
        assert await storage.get_member(1) == MemberSettings(1, "Puck")
        await storage.update_member(1, temperature=0.5)
    async with PostgresStorage(postgres_url) as again:
        assert await again.get_member(1) == MemberSettings(1, "Puck", 0.5)


async def test_a_vanished_database_is_a_storage_error(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    async with PostgresStorage(postgres_url) as storage:
        await storage.update_member(1, voice="Puck")
        postgres_server.drop_database(postgres_url.rsplit("/", 1)[1])
        for _ in range(2):  # The dropped connection, then the failed reconnection.
            with pytest.raises(StorageError, match="is unavailable") as info:
                await storage.get_member(1)
            assert postgres_server.password not in str(info.value)


async def test_the_ready_line_names_the_server_and_not_the_password(
    postgres_server: PostgresServer, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bot.storage"):
        async with PostgresStorage(postgres_url):
            pass
    assert f"PostgreSQL at postgres@127.0.0.1:{postgres_server.port}/" in caplog.text
    assert postgres_server.password not in caplog.text


# DATABASE_URL.


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg", "PostgreSQL"])
async def test_open_storage_picks_postgresql(
    make_settings: Callable[..., Settings],
    postgres_server: PostgresServer,
    postgres_url: str,
    scheme: str,
) -> None:
    url = scheme + postgres_url.removeprefix("postgresql")
    assert is_postgres_url(url)
    settings = make_settings(database_url=url)
    assert postgres_server.password not in repr(settings)
    storage = await open_storage(settings)
    try:
        assert isinstance(storage, PostgresStorage)
        await storage.update_member(1, voice="Puck")
        assert await storage.schema_version() == LATEST_VERSION
    finally:
        await storage.close()
    assert "member_settings" in await _tables(postgres_url)
    assert not (settings.data_dir / "bot.db").exists()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql://bot:{SECRET}@db.example:6543/tts?sslmode=require",
            "bot@db.example:6543/tts",
        ),
        ("postgres://db.example/tts", "db.example/tts"),
        (f"postgresql://bot:{SECRET}@db", "bot@db/bot"),
        ("postgresql:///tts?host=/run/postgresql", "/run/postgresql/tts"),
        (f"postgresql://b%40t:{SECRET}@h1:5432,h2:5433/x", "b@t@h1:5432,h2:5433/x"),
        (f"postgresql://bot:{SECRET}@/tts", "bot@localhost/tts"),
        (f"postgresql://bot:{SECRET}@db?sslmode=require", "bot@db/bot"),
        ("postgresql://bot:s/e?c@r:et@db:5432/tts", "bot@db:5432/tts"),  # Not even encoded.
    ],
)
def test_urls_are_described_without_the_password(url: str, shown: str) -> None:
    assert describe_url(url) == shown
    assert is_postgres_url(url)
    assert not {"hunter2", "s/e", "et"} & set(shown.replace("@", " ").replace("/", " ").split())


async def test_an_unparsable_url_is_refused_without_quoting_it() -> None:
    port = _closed_port()
    storage = PostgresStorage(f"postgresql://bot:s/e?c@r:{SECRET}@127.0.0.1:{port}/tts")
    assert storage.where == f"bot@127.0.0.1:{port}/tts"
    with pytest.raises(DatabaseURLError, match="could not be parsed; percent-encode") as info:
        await storage.connect()
    for piece in ("s/e", "c@r", SECRET):
        assert piece not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


@pytest.mark.parametrize("url", ["", "sqlite:///bot.db", "postgresql", "mysql://h/db"])
def test_other_urls_are_not_postgresql(url: str) -> None:
    assert not is_postgres_url(url)
