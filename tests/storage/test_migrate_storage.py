"""`python -m bot migrate-storage URL`, as a real process: the SQLite database copied into
PostgreSQL with equal rows and checksums, idempotent, refusing a target that holds other data
unless told, and never printing the password."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import astuple
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from bot.storage import PostgresStorage, SQLiteStorage, UsageRecord, pg_migrations
from bot.storage.migrations import LATEST_VERSION
from bot.storage.rows import TABLES, pg_columns, pg_sums, sqlite_columns, sqlite_sums
from tests.pg_server import PostgresServer
from tests.storage.copies import T0, Run, cli, pg_rows_of, populate


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


async def _move(data_dir: Path, *args: str, stdin: str = "") -> Run:
    """migrate-storage from the SQLite database in `data_dir` (DATABASE_URL unset)."""
    return await cli("migrate-storage", *args, url="", data_dir=data_dir, stdin=stdin)


async def _sums(url: str) -> dict[str, object]:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            columns = {table: await pg_columns(conn, table) for table in TABLES}
            return dict(await pg_sums(conn, columns))
    finally:
        await conn.close()


def _sqlite_sums(path: Path) -> dict[str, object]:
    with closing(sqlite3.connect(path)) as db:
        return dict(sqlite_sums(db, {table: sqlite_columns(db, table) for table in TABLES}))


def _saved(data_dir: Path) -> list[Path]:
    return list(data_dir.glob("postgresql-before-*"))


async def test_every_row_arrives_with_equal_counts_and_checksums(
    data_dir: Path, postgres_url: str
) -> None:
    async with SQLiteStorage(data_dir / "bot.db") as source:
        await populate(source)
    moved = await _move(data_dir, postgres_url)
    assert moved.code == 0, moved.err
    assert "3 servers, 3 members, 40 usage records" in moved.out
    assert "Every table's row count and checksum match" in moved.out
    assert await _sums(postgres_url) == _sqlite_sums(data_dir / "bot.db")
    async with SQLiteStorage(data_dir / "bot.db") as source, PostgresStorage(postgres_url) as pg:
        assert await pg.schema_version() == LATEST_VERSION
        for guild in (1001, 1002, 1003):
            assert await pg.get_guild(guild) == await source.get_guild(guild)
        for member in (501, 502, 503):
            assert await pg.get_member(member) == await source.get_member(member)
        # Sums of floats differ in the last digit when added in another order: the rows are
        # compared exactly above, the totals only as totals.
        since = T0 - timedelta(days=1)
        totals = [astuple(await storage.usage(since=since)) for storage in (pg, source)]
        assert totals[0] == pytest.approx(totals[1])
        tops = [await storage.top_users(1001, since) for storage in (pg, source)]
        assert [(user, s.calls) for user, s in tops[0]] == [(user, s.calls) for user, s in tops[1]]
        await pg.record_usage(UsageRecord(1001, 9, T0, 200, 1.0, 1.0, 1.0))  # Ids carry on.
    assert [row[0] for row in (await pg_rows_of(postgres_url))["usage"]][-2:] == [40, 41]


async def test_running_it_twice_gives_the_same_result(data_dir: Path, postgres_url: str) -> None:
    async with SQLiteStorage(data_dir / "bot.db") as source:
        await populate(source)
    first = await _move(data_dir, postgres_url)
    assert first.code == 0, first.err
    after_first = await pg_rows_of(postgres_url)
    again = await _move(data_dir, postgres_url)
    assert again.code == 0, again.err
    assert "already holds exactly what" in again.out
    assert "nothing to do" in again.out
    assert await pg_rows_of(postgres_url) == after_first
    assert not _saved(data_dir)


async def test_a_target_holding_other_data_is_refused_unless_told(
    data_dir: Path, postgres_url: str
) -> None:
    async with SQLiteStorage(data_dir / "bot.db") as source:
        await populate(source)
    async with PostgresStorage(postgres_url) as target:
        await populate(target, usage=5, seed=50)
    before = await pg_rows_of(postgres_url)

    refused = await _move(data_dir, postgres_url)
    assert refused.code == 1
    assert "already holds other data (3 servers, 3 members, 5 usage records)" in refused.err
    assert "Nothing was changed. Run again with --replace" in refused.err
    assert await pg_rows_of(postgres_url) == before

    saved = []
    for flag in ("--replace", "--force"):
        replaced = await _move(data_dir, postgres_url, flag)
        assert replaced.code == 0, replaced.err
        assert await _sums(postgres_url) == _sqlite_sums(data_dir / "bot.db")
        saved.append(Path(replaced.out.split(" held before is saved in ")[1].split(".jsonl")[0]))
        async with PostgresStorage(postgres_url) as target:
            await populate(target, usage=5, seed=50)  # Other data again, for the next flag.
    # What was overwritten was saved first, each time in a file of its own, and restores.
    assert len({path.name for path in saved}) == 2
    assert all(path.parent == data_dir for path in saved)
    restored = await cli("restore", f"{saved[0]}.jsonl", url=postgres_url, data_dir=data_dir)
    assert restored.code == 0, restored.err
    assert await pg_rows_of(postgres_url) == before


async def test_the_password_is_never_printed(
    data_dir: Path, postgres_server: PostgresServer, postgres_url: str
) -> None:
    async with SQLiteStorage(data_dir / "bot.db") as source:
        await populate(source, usage=2)
    secret = "Wr0ng-pässword-84c1f0"
    wrong = postgres_url.replace(postgres_server.password, secret)
    failed = await _move(data_dir, wrong)  # `cli` checks no output holds a password.
    assert failed.code == 1
    assert failed.err.startswith(
        f"error: Could not connect to PostgreSQL at postgres@127.0.0.1:{postgres_server.port}/"
    )
    piped = await _move(data_dir, "-", stdin=postgres_url + "\n")
    assert piped.code == 0, piped.err
    assert postgres_server.password not in piped.out + piped.err


async def test_only_a_postgresql_url_is_a_target(data_dir: Path) -> None:
    async with SQLiteStorage(data_dir / "bot.db") as source:
        await populate(source, usage=1)
    done = await _move(data_dir, "sqlite:////tmp/elsewhere.db")
    assert done.code == 2
    assert "migrate-storage copies into PostgreSQL" in done.err


async def test_an_older_target_schema_is_brought_up_to_date_first(
    data_dir: Path, postgres_url: str
) -> None:
    async with SQLiteStorage(data_dir / "bot.db") as source:
        await populate(source, usage=3)
    conn = await asyncpg.connect(postgres_url)
    try:
        await pg_migrations.migrate(conn, 2)
    finally:
        await conn.close()
    moved = await _move(data_dir, postgres_url)
    assert moved.code == 0, moved.err
    async with PostgresStorage(postgres_url) as target:
        assert await target.schema_version() == LATEST_VERSION
    assert await _sums(postgres_url) == _sqlite_sums(data_dir / "bot.db")
