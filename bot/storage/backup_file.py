"""What a backup file says about itself, and the portable JSON Lines format.

Every backup carries a manifest: the schema version, each table's columns, and each table's row
count and checksum (`rows.TableSum`). A SQLite backup keeps it in a table of its own
(`backup_manifest`); a JSON Lines backup writes the columns in its first line and the sums in its
last, so a file cut short has no last line and is refused, and any changed value changes a sum.

JSON Lines layout, one JSON value a line:

    {"format": "gemini-tts-bot backup", "format_version": 1, "schema_version": 5, ...,
     "tables": {"guild_settings": ["guild_id", ...], ...}}
    ["guild_settings", [1234, null, true, ...]]
    ...
    {"end": {"guild_settings": {"rows": 3, "sha256": "..."}, ...}}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from bot.errors import BackupError
from bot.storage.migrations import LATEST_VERSION
from bot.storage.rows import KINDS, Checksum, Row, TableSum, check_columns, tables_at, valid

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_TABLE",
    "JsonLinesReader",
    "JsonLinesWriter",
    "Manifest",
    "compare",
    "damaged",
    "newer",
    "sniff",
]

FORMAT = "gemini-tts-bot backup"
FORMAT_VERSION = 1
#: The table a SQLite backup keeps its manifest in; never part of the bot's own database.
MANIFEST_TABLE = "backup_manifest"
_SQLITE_HEADER = b"SQLite format 3\x00"


def damaged(name: str, detail: str) -> BackupError:
    return BackupError(f"{name} is damaged or is not a backup of this bot: {detail}.")


def newer(name: str, version: int) -> BackupError:
    return BackupError(
        f"{name} is from a newer version of the bot (schema version {version}; this version "
        f"knows up to {LATEST_VERSION}): use it with that version, or upgrade this one."
    )


def sniff(path: Path, name: str) -> Literal["sqlite", "json"]:
    """Which kind of backup a file is, from its first bytes."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise BackupError(f"Could not read {path}: {exc.strerror or exc}.") from None
    if head == _SQLITE_HEADER:
        return "sqlite"
    if head.lstrip()[:1] == b"{":
        return "json"
    raise damaged(name, "it is neither a SQLite database nor a JSON Lines backup")


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    #: Each table's columns, in the order the rows list them.
    columns: dict[str, list[str]]
    #: "sqlite" or "postgresql": where the backup was made.
    source: str = "sqlite"
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    #: Each table's row count and checksum; empty while a JSON Lines file is being read.
    sums: dict[str, TableSum] = field(default_factory=dict)

    def header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_version": self.schema_version,
            "source": self.source,
            "created_at": self.created_at,
            "tables": self.columns,
        }

    def to_json(self) -> str:
        return json.dumps({**self.header(), "sums": _sums_json(self.sums)})

    @classmethod
    def parse(cls, data: object, name: str, *, with_sums: bool) -> Manifest:
        """A manifest from its JSON, every field checked; a newer schema is refused first."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise damaged(name, "its manifest is missing")
        if data.get("format_version") != FORMAT_VERSION:
            raise BackupError(
                f"{name} is a backup format this version of the bot does not read (format "
                f"{data.get('format_version')!r}): use the version that made it."
            )
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise damaged(name, "its schema version is missing")
        if version > LATEST_VERSION:
            raise newer(name, version)
        tables = data.get("tables")
        expected = set(tables_at(version))
        if not isinstance(tables, dict) or set(tables) != expected:
            raise damaged(name, f"it should list the tables {', '.join(sorted(expected))}")
        columns: dict[str, list[str]] = {}
        for table in tables_at(version):
            names = tables[table]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise damaged(name, f"the columns of {table} are unreadable")
            try:
                columns[table] = check_columns(table, names)
            except BackupError as exc:
                raise damaged(name, str(exc).rstrip(".")) from None
        sums = _parse_sums(data.get("sums"), expected, name) if with_sums else {}
        return cls(
            version, columns, str(data.get("source", "")), str(data.get("created_at", "")), sums
        )


def _sums_json(sums: Mapping[str, TableSum]) -> dict[str, dict[str, Any]]:
    return {table: {"rows": s.rows, "sha256": s.sha256} for table, s in sums.items()}


def _parse_sums(data: object, tables: set[str], name: str) -> dict[str, TableSum]:
    if not isinstance(data, dict) or set(data) != tables:
        raise damaged(name, "its row counts and checksums are missing")
    sums: dict[str, TableSum] = {}
    for table, entry in data.items():
        rows = entry.get("rows") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(rows, int) or not isinstance(digest, str):
            raise damaged(name, f"the row count or checksum of {table} is unreadable")
        sums[table] = TableSum(rows, digest)
    return sums


def compare(expected: Mapping[str, TableSum], found: Mapping[str, TableSum], name: str) -> None:
    """Raise, naming the first table that differs, unless every count and checksum matches."""
    for table, want in expected.items():
        got = found.get(table)
        if got is None:
            raise damaged(name, f"the table {table} is missing")
        if got.rows != want.rows:
            raise damaged(name, f"{table} has {got.rows:,} rows where it should have {want.rows:,}")
        if got.sha256 != want.sha256:
            raise damaged(name, f"the rows of {table} do not match their checksum")


class JsonLinesWriter:
    """Writes a manifest's header, then rows in key order, then the sums it counted."""

    def __init__(self, out: IO[bytes], manifest: Manifest) -> None:
        self._out = out
        self._sums = {table: Checksum() for table in manifest.columns}
        self._line(manifest.header())

    def add(self, table: str, row: Row) -> None:
        self._sums[table].add(row)
        self._line([table, list(row)])

    def finish(self) -> dict[str, TableSum]:
        sums = {table: checksum.result() for table, checksum in self._sums.items()}
        self._line({"end": _sums_json(sums)})
        return sums

    def _line(self, value: object) -> None:
        self._out.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        self._out.write(b"\n")


class JsonLinesReader:
    """Reads a JSON Lines backup: the header at once (so a newer schema is refused before
    anything else), then `rows()`, each checked against its column's type; when they are all
    read, the sums counted must equal the ones the file ends with."""

    def __init__(self, lines: Iterable[bytes], name: str) -> None:
        self.name = name
        self._lines = enumerate(lines, start=1)
        first = next(self._lines, None)
        if first is None:
            raise damaged(name, "it is empty")
        self.manifest = Manifest.parse(self._json(*first), name, with_sums=False)
        self._kinds = {
            table: [KINDS[table][column] for column in columns]
            for table, columns in self.manifest.columns.items()
        }
        #: The verified sums, once `rows()` has been read to the end.
        self.sums: dict[str, TableSum] = {}

    def rows(self) -> Iterator[tuple[str, Row]]:
        counted = {table: Checksum() for table in self.manifest.columns}
        for number, line in self._lines:
            value = self._json(number, line)
            if isinstance(value, dict):
                end = _parse_sums(value.get("end"), set(counted), self.name)
                if next(self._lines, None) is not None:
                    raise damaged(self.name, f"there is more after its last line ({number})")
                found = {table: checksum.result() for table, checksum in counted.items()}
                compare(end, found, self.name)
                self.sums = found
                return
            table, row = self._row(number, value)
            counted[table].add(row)
            yield table, row
        raise damaged(self.name, "it ends before its last line (cut short?)")

    def _row(self, number: int, value: object) -> tuple[str, Row]:
        if (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], str)
            and value[0] in self._kinds
            and isinstance(value[1], list)
        ):
            table, row = value
            kinds = self._kinds[table]
            if len(row) == len(kinds) and all(map(valid, kinds, row)):
                # 2 for 2.0 in a float column is still the same number, summed as the float.
                return table, tuple(
                    float(v) if k == "float" and v is not None else v
                    for k, v in zip(kinds, row, strict=True)
                )
        raise damaged(self.name, f"line {number} is not a row of a known table")

    def _json(self, number: int, line: bytes) -> object:
        try:
            return json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise damaged(self.name, f"line {number} is not JSON") from None
