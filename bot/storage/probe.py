"""Looking at the configured database without changing it, for `python -m bot check`.

Opening storage the usual way (`open_storage`) creates a missing SQLite file and migrates the
schema: a check must do neither. So the file is opened but never created, its schema version
read, and a write tried and rolled back (SQLite opens a read-only file without complaint and
fails every save later); PostgreSQL gets one connection that reads the version and whether the
server takes writes (a read-only standby fails every save too). A database a newer bot wrote
is refused in the same words as at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bot.config import Settings
from bot.errors import DatabaseFileError, DatabaseURLError, StorageError
from bot.storage import migrations, pg_migrations
from bot.storage.factory import sqlite_path
from bot.storage.postgres import FAILED, _secrets, describe_url, is_postgres_url
from bot.storage.sqlite import MIN_SQLITE

__all__ = ["StorageState", "inspect_storage"]

#: Seconds to wait for a running bot's write to finish before calling the file busy.
BUSY_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class StorageState:
    backend: str
    #: The file, or user@host:port/database: never the password.
    where: str
    #: None: the SQLite file does not exist yet (the bot creates it at start).
    version: int | None
    #: The version this bot brings the schema to at start.
    latest: int
    #: Another process (a running bot) held the write lock, so writing was not tried.
    busy: bool = False


async def inspect_storage(settings: Settings) -> StorageState:
    """What DATABASE_URL points at, and its schema version; raises `StorageError` (with
    `DatabaseURLError` and `NewerDatabaseError`) for a database the bot could not use."""
    if is_postgres_url(settings.database_url):
        return await _postgres(settings.database_url, settings.connect_timeout)
    return await asyncio.to_thread(_sqlite, sqlite_path(settings).absolute())


def _sqlite(path: Path) -> StorageState:
    latest = migrations.LATEST_VERSION
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StorageError(
            f"SQLite {sqlite3.sqlite_version} is too old; the bot needs 3.24 or newer."
        )
    if not path.exists():
        return StorageState("SQLite", str(path), None, latest)
    if not path.is_file():
        raise DatabaseFileError(f"The SQLite database {path} is not a file.")
    try:
        # mode=rw: never create the file, as a plain connect would.
        db = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=BUSY_WAIT, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise DatabaseFileError(f"The SQLite database {path} cannot be opened: {exc}") from None
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # "file is not a database"
        migrations.refuse_newer(version)
        busy = not _writable(db, path)
    except sqlite3.Error as exc:
        raise DatabaseFileError(f"The SQLite database {path} cannot be used: {exc}") from None
    finally:
        db.close()
    return StorageState("SQLite", str(path), version, latest, busy=busy)


def _writable(db: sqlite3.Connection, path: Path) -> bool:
    """Write and roll back, as the bot does at start; False if a running bot holds the lock."""
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return False
        raise DatabaseFileError(_read_only(path, exc)) from None
    try:
        db.execute("CREATE TABLE _write_check (x INTEGER)")
    except sqlite3.Error as exc:
        raise DatabaseFileError(_read_only(path, exc)) from None
    finally:
        db.execute("ROLLBACK")
    return True


def _read_only(path: Path, exc: sqlite3.Error) -> str:
    return (
        f"The SQLite database {path} is read-only (check the file's and its folder's "
        f"permissions): {exc}"
    )


async def _postgres(url: str, connect_timeout: float) -> StorageState:
    where = describe_url(url)
    scheme, _, rest = url.strip().partition("://")
    dsn = f"{scheme.partition('+')[0].lower()}://{rest}"

    def reason(exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in _secrets(dsn):
            text = text.replace(secret, "***")
        return text

    try:
        conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    except ValueError:
        # Not quoted: asyncpg's parse errors quote pieces of the URL, maybe of the password.
        raise DatabaseURLError(
            f"DATABASE_URL for PostgreSQL at {where} could not be parsed; "
            "percent-encode @ : / ? # in the user name and password."
        ) from None
    except FAILED as exc:
        raise StorageError(f"Could not connect to PostgreSQL at {where}: {reason(exc)}") from None
    try:
        version = await pg_migrations.schema_version(conn)
        read_only = await conn.fetchval("SHOW transaction_read_only") == "on"
    except FAILED as exc:
        raise StorageError(f"PostgreSQL at {where} is unavailable: {reason(exc)}") from None
    finally:
        with contextlib.suppress(*FAILED):
            await conn.close(timeout=connect_timeout)
    if read_only:
        raise StorageError(
            f"PostgreSQL at {where} takes no writes (a read-only standby?): point DATABASE_URL "
            "at the primary."
        )
    migrations.refuse_newer(version, pg_migrations.LATEST_VERSION)
    return StorageState("PostgreSQL", where, version, pg_migrations.LATEST_VERSION)
