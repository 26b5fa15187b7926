"""Shared by the backup, restore and migrate-storage tests: a database with something in every
column, every row read back exactly as stored, and `python -m bot` run as a real process."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bot.storage import Storage, UsageRecord
from bot.storage.rows import KEYS, TABLES
from tests.storage.backends import REPO, Backend

__all__ = ["Run", "cli", "database_url", "populate", "rows_of", "sqlite_rows_of"]

#: A time with microseconds, the precision both backends keep.
T0 = datetime(2025, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)


async def populate(storage: Storage, *, usage: int = 40, seed: int = 0) -> None:
    """Servers with every narration setting and a dictionary, members with every setting,
    usage records with and without a server, status, cost and cache."""
    await storage.update_guild(
        1001 + seed,
        narration_channel_id=2**62 + 5,
        narration_voice_only=False,
        narration_skip_prefix="!",
        narration_max_length=450,
        narration_emoji="drop",
        narration_say_names=False,
        narration_skip_silent=True,
        narration_said="{name} a dit",
        narration_merge_speakers=True,
        narration_stale_after=90,
        max_text_length=1200,
        user_cooldown=2.5,
        daily_quota=30,
        allowed_role_id=777,
        allow_files=False,
        allow_voice=False,
        pronunciations=(("GIF", "jif"), ("naïve", "nah-eve"), ("K8s", "kubernetes")),
        narration_ignore_stage_audience=True,
        narration_require_prefix="!",
        narration_max_repeat=0,
        pace="slow",
    )
    await storage.update_guild(1002 + seed, narration_said="{name} 说", user_cooldown=0.1)
    await storage.update_guild(1003 + seed, narration_voice_only=True)  # Defaults, stored.
    await storage.update_member(
        501 + seed,
        voice="Kore",
        temperature=0.7,
        style="cheerful",
        voice_message=True,
        spoken_name="Nwin",
        narrate_me=False,
        pace="fast",
        voice_2="Puck",
    )
    await storage.update_member(502 + seed, voice="Puck", voice_message=False)
    await storage.update_member(503 + seed, spoken_name="Zoë 🎉", temperature=1.25)
    for n in range(usage):
        await storage.record_usage(
            UsageRecord(
                guild_id=None if n % 7 == 0 else 1001 + seed + n % 2,
                user_id=501 + seed + n % 3,
                at=T0 + timedelta(seconds=n * 37.5, microseconds=n * 13),
                status=None if n % 11 == 0 else (429 if n % 5 == 0 else 200),
                latency=0.1 + n / 7,
                audio_seconds=n * 0.3,
                cost=n * 0.000123,
                cached=n % 4 == 0,
            )
        )


def sqlite_rows_of(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row exactly as SQLite stores it: each value with its storage class."""
    with closing(sqlite3.connect(path)) as db:
        found: dict[str, list[tuple[Any, ...]]] = {}
        for table in TABLES:
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            picks = ", ".join(f"{c}, typeof({c})" for c in columns)
            query = f"SELECT {picks} FROM {table} ORDER BY {KEYS[table]}"
            found[table] = db.execute(query).fetchall()
    return found


async def pg_rows_of(url: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(url)
    try:
        return {
            table: [
                tuple(record.values())
                for record in await conn.fetch(f"SELECT * FROM {table} ORDER BY {KEYS[table]}")
            ]
            for table in TABLES
        }
    finally:
        await conn.close()


async def rows_of(backend: Backend) -> dict[str, list[tuple[Any, ...]]]:
    if backend.name == "sqlite":
        return sqlite_rows_of(Path(backend.target))
    return await pg_rows_of(backend.target)


def database_url(backend: Backend) -> str:
    return f"sqlite:///{backend.target}" if backend.name == "sqlite" else backend.target


@dataclass
class Run:
    code: int
    out: str
    err: str


async def cli(
    *args: str, url: str, data_dir: Path, stdin: str = "", secrets: tuple[str, ...] = ()
) -> Run:
    """`python -m bot ARGS` as a real process, with DATABASE_URL and DATA_DIR set; whatever
    happens, one or two readable lines and never a password."""
    env = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "SEGMIND_API_KEY"}}
    env.update(PYTHONPATH=str(REPO), DATABASE_URL=url, DATA_DIR=str(data_dir), LOG_LEVEL="WARNING")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--env-file",
        str(data_dir / "absent.env"),
        *args,
        cwd=data_dir.parent,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 120)
    run = Run(process.returncode or 0, out.decode(), err.decode())
    assert "Traceback" not in run.err, run.err
    for secret in (*secrets, *_passwords(url)):
        assert secret not in run.out + run.err
    return run


def _passwords(url: str) -> tuple[str, ...]:
    if not url.startswith("postgresql://"):
        return ()
    userinfo = url.partition("://")[2].rpartition("@")[0]
    return (userinfo.partition(":")[2],)
