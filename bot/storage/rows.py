"""Every table the bot keeps, read as plain values that mean the same in SQLite and PostgreSQL,
so a backup, a restore and a move between backends can be checked row for row.

The backends store the same things differently: SQLite keeps flags as 0 and 1 and usage times
as epoch seconds (REAL), PostgreSQL as BOOLEAN and TIMESTAMPTZ. Here a flag is a bool and a
time is whole microseconds since the epoch, which both hold exactly (the bot writes times with
microsecond precision), so the same data gives the same values, and the same checksum,
whichever backend it came from. A table's checksum is SHA-256 over its rows in key order, one
compact JSON line each.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from bot.errors import BackupError

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "KEYS",
    "KINDS",
    "NOUNS",
    "TABLES",
    "Checksum",
    "Kind",
    "Row",
    "TableSum",
    "Value",
    "check_columns",
    "describe",
    "encode",
    "from_postgres",
    "from_sqlite",
    "pg_columns",
    "pg_rows",
    "pg_sums",
    "sqlite_columns",
    "sqlite_rows",
    "sqlite_sums",
    "tables_at",
    "to_postgres",
    "to_sqlite",
    "valid",
]

Kind = Literal["int", "float", "text", "bool", "time"]
Value = int | float | str | None
Row = tuple[Value, ...]

#: Every column any schema version has had, and what it holds. Migrations only ever add
#: columns and never change a type, so one map serves every version.
KINDS: dict[str, dict[str, Kind]] = {
    "guild_settings": {
        "guild_id": "int",
        "narration_channel_id": "int",
        "narration_voice_only": "bool",
        "narration_skip_prefix": "text",
        "narration_max_length": "int",
        "narration_emoji": "text",
        "narration_say_names": "bool",
        "max_text_length": "int",
        "user_cooldown": "float",
        "daily_quota": "int",
        "allowed_role_id": "int",
        "allow_files": "bool",
        "allow_voice": "bool",
        "narration_skip_silent": "bool",
        "narration_said": "text",
        "narration_merge_speakers": "bool",
        "pronunciations": "text",
        "narration_stale_after": "int",
        "narration_ignore_stage_audience": "bool",
        "narration_require_prefix": "text",
        "narration_max_repeat": "int",
        "pace": "text",
    },
    "member_settings": {
        "user_id": "int",
        "voice": "text",
        "temperature": "float",
        "style": "text",
        "voice_message": "bool",
        "spoken_name": "text",
        "narrate_me": "bool",
        "pace": "text",
        "voice_2": "text",
    },
    "usage": {
        "id": "int",
        "guild_id": "int",
        "user_id": "int",
        "at": "time",
        "status": "int",
        "latency": "float",
        "audio_seconds": "float",
        "cost": "float",
        "cached": "bool",
    },
}
#: Each table's primary key: the order rows are read, written and summed in.
KEYS = {"guild_settings": "guild_id", "member_settings": "user_id", "usage": "id"}
TABLES = tuple(KEYS)
#: The schema version that created each table.
_SINCE = {"guild_settings": 1, "member_settings": 1, "usage": 2}
#: What a table's rows are, for the operator.
NOUNS = {
    "guild_settings": ("server", "servers"),
    "member_settings": ("member", "members"),
    "usage": ("usage record", "usage records"),
}

_MICROS = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICRO = timedelta(microseconds=1)


def tables_at(version: int) -> tuple[str, ...]:
    """The tables a database at `version` has."""
    return tuple(table for table in TABLES if _SINCE[table] <= version)


def check_columns(table: str, columns: Sequence[str]) -> list[str]:
    """`columns` if this bot knows them all and the key is among them; a table someone
    altered by hand could not be copied faithfully, so it is refused."""
    unknown = [column for column in columns if column not in KINDS[table]]
    if unknown:
        raise BackupError(
            f"The table {table} has columns this bot does not know ({', '.join(unknown)})."
        )
    if KEYS[table] not in columns:
        raise BackupError(f"The table {table} has no {KEYS[table]} column.")
    return list(columns)


def describe(counts: Mapping[str, int]) -> str:
    """ "3 servers, 12 members, 480 usage records"."""
    said = []
    for table in TABLES:
        count = counts.get(table, 0)
        said.append(f"{count:,} {NOUNS[table][count != 1]}")
    return ", ".join(said)


# Values, both ways, for each backend.


def from_sqlite(kind: Kind, value: Any) -> Value:
    if value is None:
        return None
    if kind == "bool":
        return bool(value)
    if kind == "time":
        return round(Decimal(value) * _MICROS)  # Decimal(float) is exact: no rounding twice.
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    return str(value)


def to_sqlite(kind: Kind, value: Value) -> Any:
    if value is None:
        return None
    if kind == "bool":
        return int(value)
    if kind == "time":
        return int(value) / _MICROS  # An exact int division: what `epoch()` wrote, bit for bit.
    if kind == "float":
        return float(value)
    return value


def from_postgres(kind: Kind, value: Any) -> Value:
    if value is None:
        return None
    if kind == "time":
        return int((value - _EPOCH) // _ONE_MICRO)
    if kind == "bool":
        return bool(value)
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    return str(value)


def to_postgres(kind: Kind, value: Value) -> Any:
    if value is None:
        return None
    if kind == "time":
        return _EPOCH + timedelta(microseconds=int(value))
    if kind == "float":
        return float(value)
    return value


def valid(kind: Kind, value: object) -> bool:
    """Whether a value read from a backup file has the type its column holds."""
    if value is None:
        return True
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("int", "time"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


# Checksums.


def encode(row: Sequence[Value]) -> bytes:
    """One row as the compact JSON line the checksums are taken over."""
    return json.dumps(list(row), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class TableSum:
    rows: int
    sha256: str


class Checksum:
    """A table's row count and SHA-256, fed one row at a time in key order."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.rows = 0

    def add(self, row: Sequence[Value]) -> None:
        self._hash.update(encode(row))
        self.rows += 1

    def result(self) -> TableSum:
        return TableSum(self.rows, self._hash.hexdigest())


# SQLite.


def sqlite_columns(db: sqlite3.Connection, table: str) -> list[str]:
    return check_columns(table, [row[1] for row in db.execute(f"PRAGMA table_info({table})")])


def sqlite_rows(db: sqlite3.Connection, table: str, columns: Sequence[str]) -> Iterator[Row]:
    kinds = [KINDS[table][column] for column in check_columns(table, columns)]
    cursor = db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {KEYS[table]}")
    for raw in cursor:
        yield tuple(from_sqlite(kind, value) for kind, value in zip(kinds, raw, strict=True))


def sqlite_sums(
    db: sqlite3.Connection, columns: Mapping[str, Sequence[str]]
) -> dict[str, TableSum]:
    sums: dict[str, TableSum] = {}
    for table, names in columns.items():
        checksum = Checksum()
        for row in sqlite_rows(db, table, names):
            checksum.add(row)
        sums[table] = checksum.result()
    return sums


# PostgreSQL. Rows are read with a cursor, so inside a transaction only.


async def pg_columns(conn: asyncpg.Connection[asyncpg.Record], table: str) -> list[str]:
    """The table's columns in order, found the way the bot's unqualified names are."""
    names = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::text::regclass"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        table,
    )
    return check_columns(table, [str(row[0]) for row in names])


async def pg_rows(
    conn: asyncpg.Connection[asyncpg.Record], table: str, columns: Sequence[str]
) -> AsyncIterator[Row]:
    kinds = [KINDS[table][column] for column in check_columns(table, columns)]
    query = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {KEYS[table]}"
    async for record in conn.cursor(query, prefetch=2000):
        yield tuple(
            from_postgres(kind, value) for kind, value in zip(kinds, record.values(), strict=True)
        )


async def pg_sums(
    conn: asyncpg.Connection[asyncpg.Record], columns: Mapping[str, Sequence[str]]
) -> dict[str, TableSum]:
    sums: dict[str, TableSum] = {}
    for table, names in columns.items():
        checksum = Checksum()
        async for row in pg_rows(conn, table, names):
            checksum.add(row)
        sums[table] = checksum.result()
    return sums
