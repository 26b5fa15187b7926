"""`python -m bot backup FILE`: a checked copy of everything the bot remembers, taken while it runs.

SQLite is copied with SQLite's online backup API, from a connection of its own and every page
in one step: one consistent snapshot, and in WAL mode the bot's writes go on meanwhile.
PostgreSQL (and SQLite when asked, `--format json`) is written as JSON Lines from one snapshot,
a portable form any backend restores. Either way the file is written beside its final name,
read back, and renamed into place only once every table's count and checksum match.

The helpers here (opening, the manifest, PostgreSQL connections) serve `restore` too. File and
SQLite work blocks the event loop on purpose: these are one-shot terminal commands, with no
other task to serve; the loop is there for asyncpg.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import asyncpg

from bot.errors import BackupError, DatabaseURLError
from bot.storage import pg_migrations
from bot.storage.backup_file import (
    MANIFEST_TABLE,
    JsonLinesReader,
    JsonLinesWriter,
    Manifest,
    compare,
    damaged,
    newer,
)
from bot.storage.factory import sqlite_path
from bot.storage.migrations import LATEST_VERSION
from bot.storage.postgres import FAILED, asyncpg_dsn, describe_url, is_postgres_url, scrub
from bot.storage.rows import (
    TableSum,
    describe,
    pg_columns,
    pg_rows,
    sqlite_columns,
    sqlite_rows,
    sqlite_sums,
    tables_at,
)

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = [
    "BUSY_TIMEOUT",
    "Format",
    "absolute",
    "backup",
    "check_integrity",
    "fsync",
    "open_existing",
    "postgres",
    "read_manifest",
    "refuse_same_file",
    "remove",
    "replacing",
    "sqlite_layout",
    "sqlite_manifest",
    "stamp",
    "take_snapshot",
    "unused_name",
    "write_postgres_json",
]

Format = Literal["sqlite", "json"]
#: Seconds to wait for the bot's write lock; in WAL mode reading never waits for it.
BUSY_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
_FORMAT_NAMES = {"sqlite": "SQLite", "json": "JSON Lines"}
#: Failures of a PostgreSQL connection once it is open.
_PG_FAILED = (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError, TimeoutError)


async def backup(settings: Settings, file: Path, fmt: Format | None = None) -> list[str]:
    """Write the configured database to `file`; returns what to tell the operator."""
    file = absolute(file)
    if not file.parent.is_dir():
        raise BackupError(f"The folder {file.parent} does not exist.")
    url = settings.database_url
    if is_postgres_url(url):
        if fmt not in (None, "json"):
            raise BackupError(
                "PostgreSQL is backed up as JSON Lines (--format json); for a dump in "
                "PostgreSQL's own format use pg_dump (see the README)."
            )
        fmt, source = "json", f"PostgreSQL at {describe_url(url)}"
        async with (
            postgres(url) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            manifest = await write_postgres_json(conn, file, source)
    else:
        database = absolute(sqlite_path(settings))
        refuse_same_file(file, database)
        if fmt is None:
            fmt = "json" if file.suffix.lower() in {".json", ".jsonl"} else "sqlite"
        source = str(database)
        try:
            if fmt == "sqlite":
                manifest = _backup_sqlite(database, file)
            else:
                manifest = _backup_sqlite_json(database, file)
        except sqlite3.Error as exc:
            raise BackupError(f"The backup of {database} failed: {exc}.") from None
    counts = describe({table: s.rows for table, s in manifest.sums.items()})
    size = file.stat().st_size / 1024
    return [
        f"Backed up {source} to {file} ({_FORMAT_NAMES[fmt]}, {size:,.1f} KiB): schema "
        f"version {manifest.schema_version}, {counts}.",
        "Read back and checked: every table's row count and checksum match.",
    ]


def _backup_sqlite(database: Path, file: Path) -> Manifest:
    with replacing(file) as temp:
        take_snapshot(database, temp)
        with closing(sqlite3.connect(temp, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode = DELETE")  # Self-contained: no -wal file beside it.
            manifest = sqlite_manifest(db, str(database))
            check_integrity(db, file.name)
            db.execute(f"CREATE TABLE {MANIFEST_TABLE} (manifest TEXT NOT NULL)")
            db.execute(f"INSERT INTO {MANIFEST_TABLE} VALUES (?)", (manifest.to_json(),))
        with closing(sqlite3.connect(temp, isolation_level=None)) as db:
            found = read_manifest(db, file.name)
    if found != manifest:
        raise BackupError(f"{file} did not read back as it was written; it was not kept.")
    return manifest


def _backup_sqlite_json(database: Path, file: Path) -> Manifest:
    with closing(open_existing(database)) as db:
        db.execute("BEGIN")  # One read transaction: every table as of the same moment.
        try:
            version, columns = sqlite_layout(db, str(database))
            manifest = Manifest(version, columns, source="sqlite")
            with replacing(file) as temp:
                with temp.open("wb") as out:
                    writer = JsonLinesWriter(out, manifest)
                    for table, names in columns.items():
                        for row in sqlite_rows(db, table, names):
                            writer.add(table, row)
                    sums = writer.finish()
                _read_back(temp, file.name, sums)
        finally:
            db.execute("ROLLBACK")
    return replace(manifest, sums=sums)


async def write_postgres_json(
    conn: asyncpg.Connection[asyncpg.Record], file: Path, where: str
) -> Manifest:
    """`file` as a JSON Lines backup of the database; call it inside a transaction, whose
    snapshot is the one written."""
    version = await pg_migrations.schema_version(conn)
    if version < 1:
        raise BackupError(f"{where} holds no tables of this bot: there is nothing to back up.")
    if version > LATEST_VERSION:
        raise newer(where, version)
    columns = {table: await pg_columns(conn, table) for table in tables_at(version)}
    manifest = Manifest(version, columns, source="postgresql")
    with replacing(file) as temp:
        with temp.open("wb") as out:
            writer = JsonLinesWriter(out, manifest)
            for table, names in columns.items():
                async for row in pg_rows(conn, table, names):
                    writer.add(table, row)
            sums = writer.finish()
        _read_back(temp, file.name, sums)
    return replace(manifest, sums=sums)


def _read_back(path: Path, name: str, sums: dict[str, TableSum]) -> None:
    with path.open("rb") as file:
        reader = JsonLinesReader(file, name)
        for _ in reader.rows():
            pass
    compare(sums, reader.sums, name)


# SQLite files.


def open_existing(path: Path) -> sqlite3.Connection:
    """A connection of its own to a database that must already exist (never creating one),
    in autocommit mode."""
    if not path.is_file():
        raise BackupError(f"There is no database at {path} (DATABASE_URL, or bot.db in DATA_DIR).")
    try:
        return sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw",
            uri=True,
            timeout=BUSY_TIMEOUT,
            isolation_level=None,
        )
    except sqlite3.Error as exc:
        raise BackupError(f"The SQLite database {path} cannot be opened: {exc}.") from None


def take_snapshot(database: Path, path: Path) -> None:
    """Copy `database` to `path` with SQLite's online backup API, every page in one step: one
    consistent snapshot, however much the bot writes meanwhile (in WAL mode it is not held up)."""
    with closing(open_existing(database)) as source, closing(sqlite3.connect(path)) as copy:
        source.backup(copy)


def sqlite_layout(db: sqlite3.Connection, name: str) -> tuple[int, dict[str, list[str]]]:
    """The schema version and each table's columns; a newer or foreign database is refused."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > LATEST_VERSION:
        raise newer(name, version)
    if version < 1:
        raise BackupError(f"{name} is not a database of this bot (it has no schema version).")
    present = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    columns: dict[str, list[str]] = {}
    for table in tables_at(version):
        if table not in present:
            raise damaged(name, f"the table {table} is missing")
        columns[table] = sqlite_columns(db, table)
    return version, columns


def sqlite_manifest(db: sqlite3.Connection, name: str) -> Manifest:
    version, columns = sqlite_layout(db, name)
    return Manifest(version, columns, source="sqlite", sums=sqlite_sums(db, columns))


def read_manifest(db: sqlite3.Connection, name: str) -> Manifest | None:
    """A SQLite backup's manifest, checked against the rows beside it; None for a plain copy
    of a database, which carries none."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > LATEST_VERSION:
        raise newer(name, version)
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MANIFEST_TABLE,)
    ).fetchone()
    if not exists:
        return None
    stored = db.execute(f"SELECT manifest FROM {MANIFEST_TABLE}").fetchall()
    try:
        data = json.loads(stored[0][0]) if len(stored) == 1 else None
    except (TypeError, ValueError):
        data = None
    manifest = Manifest.parse(data, name, with_sums=True)
    if manifest.schema_version != version:
        raise damaged(name, f"it says schema version {manifest.schema_version} but holds {version}")
    if sqlite_layout(db, name)[1] != manifest.columns:
        raise damaged(name, "its tables do not have the columns its manifest lists")
    compare(manifest.sums, sqlite_sums(db, manifest.columns), name)
    return manifest


def check_integrity(db: sqlite3.Connection, name: str) -> None:
    problems = [str(row[0]) for row in db.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        raise damaged(name, f"SQLite's integrity check failed ({problems[0]})")


def refuse_same_file(file: Path, database: Path) -> None:
    """Writing a backup over the live database, or restoring it onto itself, would destroy it."""
    names = {Path(f"{database.resolve()}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")}
    if file.resolve() in names:
        raise BackupError(f"{file} is the bot's database itself: name another file.")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A new file beside `path`, readable by its owner alone (backups hold member ids), that
    takes `path`'s name only if the block succeeds; otherwise it goes, and `path` is as it was."""
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise BackupError(f"Could not write in {path.parent}: {exc.strerror or exc}.") from None
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        fsync(temp)
        os.replace(temp, path)
        fsync(path.parent)
    except OSError as exc:
        raise BackupError(f"Could not write {path}: {exc.strerror or exc}.") from None
    finally:
        remove(temp)


def remove(path: Path) -> None:
    """A SQLite file and whatever journal SQLite left beside it."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        with suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


def fsync(path: Path) -> None:
    """Make a file's content, or a folder's new names, survive a power cut."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with suppress(OSError):  # Some filesystems refuse fsync on a folder; nothing to do.
            os.fsync(handle)
    finally:
        os.close(handle)


def absolute(path: Path) -> Path:
    """`path` from the root, symbolic links left as they are (unlike `resolve`)."""
    return Path(os.path.abspath(path))


def unused_name(folder: Path, stem: str, suffix: str = "") -> Path:
    """`stem` + `suffix` in `folder`, or with -2, -3… after the stem: a kept copy is never
    written over."""
    found, number = folder / f"{stem}{suffix}", 1
    while found.exists():
        number += 1
        found = folder / f"{stem}-{number}{suffix}"
    return found


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# PostgreSQL.


@asynccontextmanager
async def postgres(url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """One connection; every failure names the server as user@host/database, never the
    password, and none chains the driver's error (which may quote the URL)."""
    where = f"PostgreSQL at {describe_url(url)}"
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=CONNECT_TIMEOUT)
    except ValueError:
        raise DatabaseURLError(
            f"The URL of {where} could not be parsed; percent-encode @ : / ? # in the user "
            "name and password."
        ) from None
    except FAILED as exc:
        raise BackupError(f"Could not connect to {where}: {_reason(url, exc)}.") from None
    try:
        yield conn
    except _PG_FAILED as exc:
        conn.terminate()
        raise BackupError(f"{where} failed: {_reason(url, exc)}. Nothing was changed.") from None
    except BaseException:
        conn.terminate()
        raise
    with suppress(*_PG_FAILED):
        await asyncio.wait_for(conn.close(), CONNECT_TIMEOUT)


def _reason(url: str, exc: BaseException) -> str:
    return scrub(url, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
