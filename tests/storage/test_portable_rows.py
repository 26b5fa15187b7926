"""The plain values backups are checked with: they cover every column the migrations ever made,
with the type each backend gave it, and a usage time means the same in both, bit for bit."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import asyncpg
from hypothesis import given
from hypothesis import strategies as st

from bot.storage import migrations, pg_migrations
from bot.storage.models import epoch
from bot.storage.rows import (
    KINDS,
    from_postgres,
    from_sqlite,
    pg_columns,
    sqlite_columns,
    tables_at,
    to_postgres,
    to_sqlite,
)

SQLITE_TYPES = {"INTEGER": {"int", "bool"}, "REAL": {"float", "time"}, "TEXT": {"text"}}
PG_TYPES = {
    "bigint": {"int"},
    "integer": {"int"},
    "boolean": {"bool"},
    "double precision": {"float"},
    "timestamp with time zone": {"time"},
    "text": {"text"},
}


async def test_every_sqlite_column_of_every_version_has_a_kind_of_its_type(
    tmp_path: Path,
) -> None:
    for version in range(1, migrations.LATEST_VERSION + 1):
        path = tmp_path / f"v{version}.db"
        async with aiosqlite.connect(path, isolation_level=None) as db:
            await migrations.migrate(db, version)
        with closing(sqlite3.connect(path)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            assert set(tables_at(version)) == tables - {"usage_guild_at", "usage_user_at"}
            for table in tables_at(version):
                assert sqlite_columns(db, table)  # Refuses a column KINDS lacks.
                for _, name, declared, *_ in db.execute(f"PRAGMA table_info({table})"):
                    assert KINDS[table][name] in SQLITE_TYPES[declared], (table, name)
    assert set(KINDS) == set(tables_at(migrations.LATEST_VERSION))


async def test_every_postgresql_column_of_every_version_has_a_kind_of_its_type(
    postgres_url: str,
) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        for version in range(1, pg_migrations.LATEST_VERSION + 1):
            await pg_migrations.migrate(conn, version)
            for table in tables_at(version):
                assert await pg_columns(conn, table)
                for name, declared in await conn.fetch(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_name = $1",
                    table,
                ):
                    assert KINDS[table][name] in PG_TYPES[declared], (table, name)
    finally:
        await conn.close()


#: Until 2**33 seconds (March 2242) a double's epoch seconds still hold every microsecond.
TIMES = st.datetimes(datetime(1990, 1, 1), datetime(2242, 1, 1), timezones=st.just(UTC))


@given(TIMES)
def test_a_usage_time_is_the_same_whole_microseconds_in_both_backends(at: datetime) -> None:
    stored = epoch(at)  # What SQLite holds: epoch seconds, as the bot writes them.
    micros = from_sqlite("time", stored)
    assert micros == from_postgres("time", at)
    assert to_sqlite("time", micros) == stored  # Bit for bit.
    assert to_postgres("time", micros) == at
