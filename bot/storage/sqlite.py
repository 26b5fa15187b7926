"""The default backend: one SQLite file, safe for many tasks and for a second process at once.

WAL lets readers and the writer proceed together; `busy_timeout` makes a second connection
wait for the lock instead of failing; every write is a `BEGIN IMMEDIATE` transaction, so it takes
the lock up front and never fails halfway when upgrading from read to write.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, get_type_hints

import aiosqlite

from bot.errors import DatabaseFileError, StorageError
from bot.storage import migrations
from bot.storage.models import (
    GuildSettings,
    MemberSettings,
    UsageRecord,
    UsageSummary,
    epoch,
    guild_from_row,
    guild_to_row,
)
from bot.storage.validation import guild_changes, member_changes

__all__ = ["MIN_SQLITE", "SQLiteStorage"]

log = logging.getLogger(__name__)

#: Upserts (3.24) are what make partial updates atomic.
MIN_SQLITE = (3, 24, 0)

#: Usage times are UTC epoch seconds: whole days since this one are UTC days.
_EPOCH_DAY = date(1970, 1, 1)

_SUMMARY = """
    COUNT(*),
    COALESCE(SUM(cached = 0 AND (status IS NULL OR status NOT BETWEEN 200 AND 299)), 0),
    COALESCE(SUM(audio_seconds), 0.0),
    COALESCE(SUM(cost), 0.0),
    COALESCE(SUM(cached), 0)
"""


class SQLiteStorage:
    """`Storage` on one aiosqlite connection; an asyncio lock keeps each task's transaction
    whole, since tasks share that connection."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> SQLiteStorage:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        if self._db is not None:
            return
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StorageError(
                f"SQLite {sqlite3.sqlite_version} is too old; the bot needs 3.24 or newer."
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit: transactions are opened explicitly, never implicitly by the driver.
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise self._error("cannot be opened", exc) from exc
        try:
            db.row_factory = aiosqlite.Row
            await db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000):d}")
            mode = await self._enable_wal(db)
            if mode.lower() != "wal":
                log.warning(
                    "SQLite at %s is in %s mode, not WAL: writes may block", self.path, mode
                )
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            version = await migrations.migrate(db)
            await self._check_writable(db)
        except sqlite3.Error as exc:
            await db.close()
            raise self._error("cannot be used", exc) from exc
        except BaseException:
            await db.close()
            raise
        log.info("Storage ready: %s (schema version %d)", self.path, version)
        self._db = db

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                await db.close()

    async def schema_version(self) -> int:
        async with self._lock:
            return await migrations.schema_version(self._connection())

    # Members.

    async def get_member(self, user_id: int) -> MemberSettings:
        rows = await self._fetch("SELECT * FROM member_settings WHERE user_id = ?", (user_id,))
        return _member(dict(rows[0])) if rows else MemberSettings.defaults(user_id)

    async def update_member(self, user_id: int, /, **changes: Any) -> MemberSettings:
        checked = member_changes(changes)
        if not checked:
            return await self.get_member(user_id)
        row = await self._upsert(
            "member_settings", "user_id", asdict(MemberSettings.defaults(user_id)), checked
        )
        return _member(row)

    async def reset_member(self, user_id: int) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM member_settings WHERE user_id = ?", (user_id,))

    # Servers.

    async def get_guild(self, guild_id: int) -> GuildSettings:
        rows = await self._fetch("SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
        return _guild(dict(rows[0])) if rows else GuildSettings.defaults(guild_id)

    async def update_guild(self, guild_id: int, /, **changes: Any) -> GuildSettings:
        checked = guild_changes(changes)
        if not checked:
            return await self.get_guild(guild_id)
        row = await self._upsert(
            "guild_settings",
            "guild_id",
            guild_to_row(asdict(GuildSettings.defaults(guild_id))),
            guild_to_row(checked),
        )
        return _guild(row)

    # Usage.

    async def record_usage(self, record: UsageRecord) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO usage (guild_id, user_id, at, status, latency, audio_seconds, cost,"
                " cached) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.guild_id,
                    record.user_id,
                    epoch(record.at),
                    record.status,
                    float(record.latency),
                    float(record.audio_seconds),
                    float(record.cost),
                    bool(record.cached),
                ),
            )

    async def usage(
        self, *, since: datetime, guild_id: int | None = None, user_id: int | None = None
    ) -> UsageSummary:
        where = ["at >= ?"]
        params: list[Any] = [epoch(since)]
        for column, value in (("guild_id", guild_id), ("user_id", user_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        rows = await self._fetch(
            f"SELECT {_SUMMARY} FROM usage WHERE {' AND '.join(where)}", params
        )
        return _summary(rows[0])

    async def top_users(
        self, guild_id: int, since: datetime, limit: int = 5
    ) -> list[tuple[int, UsageSummary]]:
        if limit < 1:
            raise ValueError("limit must be at least 1.")
        rows = await self._fetch(
            f"SELECT user_id, {_SUMMARY} FROM usage WHERE guild_id = ? AND at >= ?"
            " GROUP BY user_id ORDER BY COUNT(*) DESC, SUM(cost) DESC, user_id LIMIT ?",
            (guild_id, epoch(since), limit),
        )
        return [(int(row[0]), _summary(tuple(row)[1:])) for row in rows]

    async def daily_usage(self, guild_id: int, since: datetime) -> list[tuple[date, UsageSummary]]:
        rows = await self._fetch(
            f"SELECT CAST(at / 86400 AS INTEGER) AS day, {_SUMMARY} FROM usage"
            " WHERE guild_id = ? AND at >= ? GROUP BY day ORDER BY day",
            (guild_id, epoch(since)),
        )
        return [
            (_EPOCH_DAY + timedelta(days=int(row[0])), _summary(tuple(row)[1:])) for row in rows
        ]

    async def forget_member(self, user_id: int) -> int:
        deleted = 0
        async with self._transaction() as db:
            for table in ("member_settings", "usage"):
                async with db.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,)) as cur:
                    deleted += cur.rowcount
        return deleted

    # Plumbing.

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("Storage is not connected: call connect() first.")
        return self._db

    def _error(self, what: str, exc: BaseException) -> DatabaseFileError:
        """An error that names the file, so the operator knows which one to fix."""
        return DatabaseFileError(f"The SQLite database {self.path} {what}: {exc}")

    async def _check_writable(self, db: aiosqlite.Connection) -> None:
        """Write something and roll it back: SQLite opens a read-only file without complaint
        and fails every write later, so the problem is found at startup instead."""
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute("CREATE TABLE _write_check (x INTEGER)")
        except sqlite3.Error as exc:
            await migrations.rollback(db)
            raise self._error(
                "is read-only (check the file's and its folder's permissions)", exc
            ) from exc
        await db.execute("ROLLBACK")

    async def _fetch(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._lock:
            try:
                return list(await self._connection().execute_fetchall(sql, tuple(params)))
            except sqlite3.Error as exc:
                raise self._error("failed a read", exc) from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            db = self._connection()
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error("failed a write", exc) from exc
            try:
                yield db
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await migrations.rollback(db)
                raise self._error("failed a write", exc) from exc
            except BaseException:
                await migrations.rollback(db)
                raise

    async def _upsert(
        self, table: str, key: str, defaults: Mapping[str, Any], changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """One statement that inserts the defaults plus `changes`, or on an existing row sets
        only `changes`: a concurrent update of other fields is never overwritten."""
        row = {**defaults, **changes}
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        assignments = ", ".join(f"{name} = excluded.{name}" for name in changes)
        async with self._transaction() as db:
            await db.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})"
                f" ON CONFLICT ({key}) DO UPDATE SET {assignments}",
                tuple(row.values()),
            )
            stored = await db.execute_fetchall(
                f"SELECT * FROM {table} WHERE {key} = ?", (row[key],)
            )
        return dict(next(iter(stored)))

    async def _enable_wal(self, db: aiosqlite.Connection) -> str:
        """Switch to WAL, retrying: while another connection is switching the same new file,
        SQLite reports "database is locked" at once instead of calling the busy handler."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                return str(await self._pragma(db, "journal_mode = WAL"))
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or loop.time() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    @staticmethod
    async def _pragma(db: aiosqlite.Connection, pragma: str) -> Any:
        async with db.execute(f"PRAGMA {pragma}") as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None


#: SQLite has no boolean type: these come back as 0 and 1.
_GUILD_FLAGS = tuple(name for name, hint in get_type_hints(GuildSettings).items() if hint is bool)


def _guild(row: dict[str, Any]) -> GuildSettings:
    for name in _GUILD_FLAGS:
        row[name] = bool(row[name])
    return guild_from_row(row)


def _member(row: dict[str, Any]) -> MemberSettings:
    for name in ("voice_message", "narrate_me"):
        if row.get(name) is not None:
            row[name] = bool(row[name])
    return MemberSettings(**row)


def _summary(values: Iterable[Any]) -> UsageSummary:
    calls, failures, audio, cost, cached = values
    return UsageSummary(int(calls), int(failures), float(audio), float(cost), int(cached))
