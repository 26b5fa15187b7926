"""`restore FILE` and `migrate-storage URL`: a checked copy put in place of a database, all at
once or not at all.

Nothing is written into the database being replaced until the copy is known good. The backup
is first rebuilt as a new SQLite file beside it ("staged"): a newer schema is refused there, a
damaged file fails its integrity check or its checksums there, and the staged copy is migrated
to this bot's schema and checked again. Only then is it put in place: for SQLite by one rename
(the old file is kept beside it under another name), for PostgreSQL in one transaction that
checks every table's count and checksum before it commits. Whatever fails, the old database
is as it was.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite
import asyncpg

from bot.errors import BackupError, DatabaseURLError
from bot.storage import migrations, pg_migrations
from bot.storage.backup import (
    absolute,
    check_integrity,
    fsync,
    postgres,
    read_manifest,
    refuse_same_file,
    remove,
    sqlite_layout,
    sqlite_manifest,
    stamp,
    take_snapshot,
    unused_name,
    write_postgres_json,
)
from bot.storage.backup_file import (
    MANIFEST_TABLE,
    JsonLinesReader,
    Manifest,
    compare,
    damaged,
    sniff,
)
from bot.storage.factory import sqlite_path
from bot.storage.migrations import LATEST_VERSION
from bot.storage.postgres import describe_url, is_postgres_url
from bot.storage.rows import (
    KINDS,
    TABLES,
    TableSum,
    describe,
    pg_columns,
    pg_sums,
    sqlite_columns,
    sqlite_rows,
    sqlite_sums,
    to_postgres,
    to_sqlite,
)

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["Staged", "install", "migrate_storage", "restore", "staged"]


@dataclass(frozen=True)
class Staged:
    """A backup rebuilt as a SQLite file at this bot's schema version, and checked."""

    path: Path
    #: What the backup said about itself: its version, columns, counts and checksums.
    manifest: Manifest
    #: Every table's columns and sums now, at LATEST_VERSION.
    columns: dict[str, list[str]]
    sums: dict[str, TableSum]
    #: False for a plain copy of a database, which carries no checksums to check.
    checked: bool

    def counts(self) -> str:
        return describe({table: s.rows for table, s in self.sums.items()})


async def restore(settings: Settings, file: Path) -> list[str]:
    """Replace the configured database with the backup in `file`; returns what to tell the
    operator."""
    file = absolute(file)
    if not file.is_file():
        raise BackupError(f"There is no file {file}. Nothing was changed.")
    url = settings.database_url
    if is_postgres_url(url):
        where = f"PostgreSQL at {describe_url(url)}"
        with tempfile.TemporaryDirectory(prefix="tts-restore-") as scratch:
            async with staged(file, Path(scratch), file.name) as copy, postgres(url) as conn:
                changed, saved = await install(conn, copy, where, replace=True, keep=settings)
        if not changed:
            return [f"{where} already holds exactly what {file} holds: nothing to do."]
        lines = [_restored(file, copy, where)]
        if saved is not None:
            lines.append(f"What it held before is saved in {saved}.")
    else:
        target = absolute(sqlite_path(settings))
        refuse_same_file(file, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        async with staged(file, target.parent, file.name) as copy:
            try:
                kept = _put_in_place(copy, target)
            except (OSError, sqlite3.Error) as exc:
                raise BackupError(
                    f"Could not put the restored database in place at {target}: {exc}. "
                    "Nothing was changed."
                ) from None
        lines = [_restored(file, copy, str(target))]
        if kept is not None:
            lines.append(f"The previous database is kept as {kept}.")
    if not copy.checked:
        lines.append(
            f"{file.name} carries no checksums (a plain copy of the database?): its structure "
            "was checked, its values could not be."
        )
    return lines


def _restored(file: Path, copy: Staged, where: str) -> str:
    version = copy.manifest.schema_version
    upgraded = f", upgraded to {LATEST_VERSION}" if version < LATEST_VERSION else ""
    return (
        f"Restored {file} (schema version {version}{upgraded}) into {where}: {copy.counts()}. "
        "Every table's row count and checksum match."
    )


async def migrate_storage(settings: Settings, url: str, *, replace: bool = False) -> list[str]:
    """Copy the configured SQLite database into the PostgreSQL database at `url`."""
    if not is_postgres_url(url):
        raise DatabaseURLError(
            "migrate-storage copies into PostgreSQL: give its URL, "
            "postgresql://user:password@host:5432/database."
        )
    if is_postgres_url(settings.database_url):
        raise BackupError(
            "DATABASE_URL already names PostgreSQL; migrate-storage copies the SQLite database "
            "the bot used until now: run it with that DATABASE_URL (or none, for bot.db in "
            "DATA_DIR)."
        )
    database = absolute(sqlite_path(settings))
    where = f"PostgreSQL at {describe_url(url)}"
    with tempfile.TemporaryDirectory(prefix="tts-move-") as scratch:
        snapshot = Path(scratch) / "snapshot.db"
        try:
            take_snapshot(database, snapshot)
        except sqlite3.Error as exc:
            raise BackupError(f"Could not read {database}: {exc}. Nothing was changed.") from None
        async with staged(snapshot, Path(scratch), str(database)) as copy, postgres(url) as conn:
            changed, saved = await install(conn, copy, where, replace=replace, keep=settings)
    if not changed:
        return [
            f"{where} already holds exactly what {database} holds ({copy.counts()}, schema "
            f"version {LATEST_VERSION}): nothing to do."
        ]
    lines = [
        f"Copied {database} into {where}: {copy.counts()}, schema version {LATEST_VERSION}. "
        "Every table's row count and checksum match."
    ]
    if saved is not None:
        lines.append(f"What {where} held before is saved in {saved}.")
    lines.append("To use it, set DATABASE_URL to its URL (in .env) and restart the bot.")
    return lines


# Staging.


@asynccontextmanager
async def staged(file: Path, directory: Path, name: str) -> AsyncIterator[Staged]:
    """The backup in `file` rebuilt as a checked SQLite file in `directory` (removed after,
    unless it was moved into place). `name` is how messages call the backup."""
    handle, temp = tempfile.mkstemp(prefix=".restore-", suffix=".db", dir=directory)
    os.close(handle)
    path = Path(temp)
    try:
        try:
            manifest, checked, columns, sums = await _stage(file, path, name)
        except BackupError as exc:
            raise BackupError(f"{exc} Nothing was changed.") from None
        except OSError as exc:
            raise BackupError(
                f"Could not prepare the restore in {directory}: {exc.strerror or exc}. "
                "Nothing was changed."
            ) from None
        yield Staged(path, manifest, columns, sums, checked)
    finally:
        remove(path)


async def _stage(
    file: Path, path: Path, name: str
) -> tuple[Manifest, bool, dict[str, list[str]], dict[str, TableSum]]:
    try:
        if sniff(file, name) == "sqlite":
            manifest, checked = _copy_sqlite(file, path, name)
        else:
            manifest, checked = await _load_json(file, path, name)
        async with aiosqlite.connect(path, isolation_level=None) as adb:
            await migrations.migrate(adb)
        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            # Migrating must have kept every row of the backup as it was.
            compare(manifest.sums, sqlite_sums(db, manifest.columns), name)
            columns = {table: sqlite_columns(db, table) for table in TABLES}
            sums = sqlite_sums(db, columns)
            check_integrity(db, name)
    except sqlite3.Error as exc:
        raise damaged(name, f"SQLite said: {exc}") from None
    return manifest, checked, columns, sums


def _copy_sqlite(file: Path, path: Path, name: str) -> tuple[Manifest, bool]:
    shutil.copyfile(file, path)  # The operator's file is only ever read.
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        found = read_manifest(db, name)  # Refuses a newer schema before anything else.
        check_integrity(db, name)
        db.execute("PRAGMA journal_mode = DELETE")  # A copy taken of a database in WAL mode.
        if found is None:
            return sqlite_manifest(db, name), False
        db.execute(f"DROP TABLE {MANIFEST_TABLE}")
        return found, True


async def _load_json(file: Path, path: Path, name: str) -> tuple[Manifest, bool]:
    with file.open("rb") as lines:
        reader = JsonLinesReader(lines, name)  # Refuses a newer schema before anything else.
        manifest = reader.manifest
        async with aiosqlite.connect(path, isolation_level=None) as adb:
            await migrations.migrate(adb, manifest.schema_version)
        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            layout = sqlite_layout(db, name)[1]
            for table, names in manifest.columns.items():
                if set(names) != set(layout[table]):
                    raise damaged(name, f"the columns of {table} are not those of its version")
            inserts = {
                table: f"INSERT INTO {table} ({', '.join(names)})"
                f" VALUES ({', '.join('?' * len(names))})"
                for table, names in manifest.columns.items()
            }
            kinds = {t: [KINDS[t][n] for n in names] for t, names in manifest.columns.items()}
            db.execute("BEGIN")
            for table, row in reader.rows():
                values = [to_sqlite(*pair) for pair in zip(kinds[table], row, strict=True)]
                db.execute(inserts[table], values)
            db.execute("COMMIT")
            compare(reader.sums, sqlite_sums(db, manifest.columns), name)
    return replace(manifest, sums=reader.sums), True


# Putting it in place.


def _put_in_place(copy: Staged, target: Path) -> Path | None:
    """Rename the staged file over `target`, keeping the old one under another name; if the
    result does not read back as staged, the old one goes back. Returns where it is kept."""
    kept: Path | None = None
    if not target.exists():
        remove(target)  # Journals left by a database that is gone must not meet the new one.
        os.replace(copy.path, target)
        fsync(target.parent)
    else:
        kept = unused_name(target.parent, f"{target.name}.before-restore-{stamp()}")
        _same_owner(copy.path, target)
        with _held(target):
            try:
                os.link(target, kept)  # Instant and free; the copy is only for filesystems
            except OSError:  # without hard links.
                shutil.copy2(target, kept)
            os.replace(copy.path, target)
        fsync(target.parent)
    try:
        with closing(sqlite3.connect(f"{target.as_uri()}?mode=ro", uri=True)) as db:
            found = sqlite_sums(db, copy.columns)
    except sqlite3.Error as exc:
        found = {"": TableSum(0, str(exc))}
    if found != copy.sums:
        if kept is not None:
            os.replace(kept, target)
        else:
            remove(target)
        raise BackupError(f"{target} did not read back as restored; the old one is back in place.")
    return kept


def _same_owner(new: Path, old: Path) -> None:
    """The restored file gets the old one's mode and, where allowed, its owner: the bot must
    still be able to write it when root restored it."""
    status = old.stat()
    os.chmod(new, stat.S_IMODE(status.st_mode))
    with suppress(OSError):
        os.chown(new, status.st_uid, status.st_gid)


@contextmanager
def _held(target: Path) -> Iterator[None]:
    """The old database folded into one file (its WAL checkpointed and gone) and locked while
    it is swapped; refused while anyone has it open, such as the running bot."""
    db = sqlite3.connect(f"{target.as_uri()}?mode=rw", uri=True, timeout=1, isolation_level=None)
    try:
        try:
            mode = str(db.execute("PRAGMA journal_mode = DELETE").fetchone()[0])
            db.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            mode = "busy"
        except sqlite3.DatabaseError:  # Not a database any more: no one can be using it.
            mode = "delete"
        if mode.lower() != "delete":
            raise BackupError(
                f"The database {target} is in use: stop the bot, then restore again. "
                "Nothing was changed."
            )
        yield
    finally:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        db.close()


async def install(
    conn: asyncpg.Connection[asyncpg.Record],
    copy: Staged,
    where: str,
    *,
    replace: bool,
    keep: Settings,
) -> tuple[bool, Path | None]:
    """Make the PostgreSQL database hold exactly the staged rows, in one transaction that is
    committed only if every table's count and checksum match. A database holding other data is
    refused unless `replace`, and then what it held is saved in DATA_DIR first. Returns whether
    anything changed, and where the old data was saved."""
    await pg_migrations.migrate(conn)  # Creates the tables, or brings them up to date.
    for table in TABLES:
        if set(await pg_columns(conn, table)) != set(copy.columns[table]):
            raise BackupError(
                f"The table {table} in {where} does not have the columns of schema version "
                f"{LATEST_VERSION}. Nothing was changed."
            )
    async with conn.transaction():
        await conn.execute(f"LOCK TABLE {', '.join(TABLES)} IN ACCESS EXCLUSIVE MODE")
        current = await pg_sums(conn, copy.columns)
        if current == copy.sums:
            return False, None
        saved = None
        if any(s.rows for s in current.values()):
            if not replace:
                held = describe({table: s.rows for table, s in current.items()})
                raise BackupError(
                    f"{where} already holds other data ({held}). Nothing was changed. "
                    "Run again with --replace to overwrite it (what it holds is saved to "
                    "DATA_DIR first)."
                )
            keep.data_dir.mkdir(parents=True, exist_ok=True)
            saved = unused_name(absolute(keep.data_dir), f"postgresql-before-{stamp()}", ".jsonl")
            await write_postgres_json(conn, saved, where)
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
        with closing(sqlite3.connect(copy.path)) as db:
            for table, names in copy.columns.items():
                kinds = [KINDS[table][name] for name in names]
                records = (
                    tuple(to_postgres(*pair) for pair in zip(kinds, row, strict=True))
                    for row in sqlite_rows(db, table, names)
                )
                # COPY writes the usage ids as given, even into an identity column.
                await conn.copy_records_to_table(table, records=records, columns=names)
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('usage', 'id'), COALESCE(MAX(id), 0) + 1, false)"
            " FROM usage"
        )
        found = await pg_sums(conn, copy.columns)
        if found != copy.sums:
            raise BackupError(
                f"The rows written to {where} did not match the copy; they were rolled back. "
                "Nothing was changed."
            )
    return True, saved
