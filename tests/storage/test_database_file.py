"""A database file the bot cannot use is found at startup, and named (issue 11, point 14)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot.errors import DatabaseFileError, StorageError
from bot.storage import SQLiteStorage, UsageRecord


async def test_a_read_only_database_fails_at_startup_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bot.db"
    async with SQLiteStorage(path):
        pass  # created, migrated, in WAL mode: as a previous run leaves it
    real_connect = aiosqlite.connect

    def read_only(database: Any, **kwargs: Any) -> Any:
        # What SQLite does with a file it may not write (tests run as root, so chmod cannot
        # show it): open it read-only without complaint, and fail each write later.
        return real_connect(f"file:{database}?mode=ro", uri=True, **kwargs)

    monkeypatch.setattr(aiosqlite, "connect", read_only)
    storage = SQLiteStorage(path)
    with pytest.raises(DatabaseFileError) as caught:
        await storage.connect()
    assert str(path) in str(caught.value)
    assert "read-only" in str(caught.value)


async def test_sqlite_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    path.write_bytes(b"this is not a database, just some bytes " * 200)
    with pytest.raises(StorageError) as caught:
        await SQLiteStorage(path).connect()
    assert str(path) in str(caught.value)


async def test_errors_after_startup_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with SQLiteStorage(path) as storage:
        await storage._connection().execute("DROP TABLE usage")
        record = UsageRecord(
            guild_id=1,
            user_id=2,
            at=datetime.now(UTC),
            status=200,
            latency=0.1,
            audio_seconds=1.0,
            cost=0.0,
        )
        with pytest.raises(DatabaseFileError, match=str(path)):
            await storage.record_usage(record)
        with pytest.raises(DatabaseFileError, match=str(path)):
            await storage.usage(since=datetime.now(UTC))
