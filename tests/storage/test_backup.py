"""`python -m bot backup` and `restore`, as real processes, on both backends: every row comes
back exactly as it was, a backup taken while another connection writes is one moment, and a
newer or damaged backup is refused with the old database untouched."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import astuple, dataclass
from datetime import timedelta
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from bot.storage import SQLiteStorage, UsageRecord
from bot.storage.migrations import LATEST_VERSION, migrate
from tests.storage.backends import Backend
from tests.storage.copies import (
    T0,
    Run,
    cli,
    database_url,
    populate,
    rows_of,
    sqlite_rows_of,
)

CASES = [("sqlite", "backup.db"), ("sqlite", "backup.jsonl"), ("postgres", "backup.jsonl")]


@dataclass(frozen=True)
class Case:
    backend: Backend
    #: Where the backup goes; its name says the format.
    file: Path
    data_dir: Path

    @property
    def url(self) -> str:
        return database_url(self.backend)

    async def run(self, *args: str) -> Run:
        return await cli(*args, url=self.url, data_dir=self.data_dir)


@pytest.fixture
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    """A backend and a backup file name, from `CASES`."""
    kind, name = request.param
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if kind == "sqlite":
        backend = Backend("sqlite", str(data_dir / "bot.db"))
    else:
        backend = Backend("postgres", request.getfixturevalue("postgres_url"))
    return Case(backend, tmp_path / name, data_dir)


def each(cases: list[tuple[str, str]] = CASES) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", cases, indirect=True, ids="-".join)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _no_leftovers(case: Case) -> None:
    found = [p.name for p in case.data_dir.parent.rglob("*") if p.name.endswith(".tmp")]
    assert not found + [p.name for p in case.data_dir.glob(".restore-*")]


@each()
async def test_a_restored_backup_holds_every_row_exactly_as_it_was(case: Case) -> None:
    backend = case.backend
    async with backend.open() as storage:
        await populate(storage)
        guild, member = await storage.get_guild(1001), await storage.get_member(501)
    before = await rows_of(backend)

    made = await case.run("backup", str(case.file))
    assert made.code == 0, made.err
    assert "3 servers, 3 members, 40 usage records" in made.out
    assert _mode(case.file) == 0o600  # Member ids: for the operator's eyes only.

    async with backend.open() as storage:  # Everything changes after the backup…
        await storage.update_guild(1001, narration_said="{name} spoke", pronunciations=())
        await storage.update_guild(1004, daily_quota=1)
        await storage.forget_member(501)
        await storage.record_usage(UsageRecord(1, 9, T0, 200, 1.0, 1.0, 1.0))
    assert await rows_of(backend) != before

    done = await case.run("restore", str(case.file))
    assert done.code == 0, done.err
    assert "Every table's row count and checksum match" in done.out
    assert await rows_of(backend) == before  # …and comes back, value for value.
    async with backend.open() as storage:
        assert await storage.get_guild(1001) == guild
        assert await storage.get_member(501) == member
        # New usage ids carry on after the restored ones.
        await storage.record_usage(UsageRecord(1, 9, T0, 200, 1.0, 1.0, 1.0))
    assert [row[0] for row in (await rows_of(backend))["usage"]][-2:] == [40, 41]
    if backend.name == "sqlite":
        kept = next(case.data_dir.glob("bot.db.before-restore-*"))
        assert f"kept as {kept}" in done.out
        assert len(sqlite_rows_of(kept)["guild_settings"]) == 4  # What was replaced.
    else:
        saved = next(case.data_dir.glob("postgresql-before-*.jsonl"))
        assert f"saved in {saved}" in done.out
    _no_leftovers(case)


async def _writer(backend: Backend, stop: asyncio.Event) -> int:
    """Each transaction adds one usage record and sets server 1's quota to the count, so any
    moment has count == quota; returns how many transactions it made."""
    n = 0
    if backend.name == "sqlite":
        async with aiosqlite.connect(backend.target, isolation_level=None) as db:
            await db.execute("PRAGMA busy_timeout = 10000")
            while not stop.is_set():
                n += 1
                await db.execute("BEGIN IMMEDIATE")
                await db.execute(
                    "INSERT INTO usage (user_id, at, latency, audio_seconds, cost)"
                    " VALUES (?, ?, 0, 0, 0)",
                    (n, 1.7e9 + n),
                )
                await db.execute(f"UPDATE guild_settings SET daily_quota = {n} WHERE guild_id = 1")
                await db.execute("COMMIT")
        return n
    conn = await asyncpg.connect(backend.target)
    try:
        while not stop.is_set():
            n += 1
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO usage (user_id, at, latency, audio_seconds, cost)"
                    " VALUES ($1, $2, 0, 0, 0)",
                    n,
                    T0 + timedelta(seconds=n),
                )
                await conn.execute(f"UPDATE guild_settings SET daily_quota = {n} WHERE guild_id=1")
    finally:
        await conn.close()
    return n


@each()
async def test_a_backup_taken_while_another_connection_writes_is_one_moment(case: Case) -> None:
    async with case.backend.open() as storage:
        await storage.update_guild(1, daily_quota=0)
    stop = asyncio.Event()
    writing = asyncio.create_task(_writer(case.backend, stop))
    await asyncio.sleep(0.3)
    counts = []
    for attempt in range(2):  # two moments, one after the other
        file = case.file.with_name(f"{attempt}-{case.file.name}")
        made = await case.run("backup", str(file))
        assert made.code == 0, made.err
        check = case.data_dir.parent / f"check-{attempt}" / "bot.db"
        check.parent.mkdir()
        done = await cli("restore", str(file), url=f"sqlite:///{check}", data_dir=check.parent)
        assert done.code == 0, done.err
        with closing(sqlite3.connect(check)) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM usage").fetchone()
            (quota,) = db.execute("SELECT daily_quota FROM guild_settings").fetchone()
        assert count == quota  # Both from the same moment.
        counts.append(count)
    stop.set()
    written = await writing  # The writer was never held up into failing.
    assert 0 < counts[0] < counts[-1] < written


async def _backed_up(case: Case) -> None:
    async with case.backend.open() as storage:
        await populate(storage)
    made = await case.run("backup", str(case.file))
    assert made.code == 0, made.err


def _newer(file: Path) -> None:
    if file.suffix == ".db":
        with closing(sqlite3.connect(file)) as db:
            db.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
        return
    lines = file.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["schema_version"] = LATEST_VERSION + 1
    header["tables"]["voices"] = ["id"]  # A newer bot's table: never looked at.
    file.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))


def _image(case: Case) -> bytes:
    return Path(case.backend.target).read_bytes() if case.backend.name == "sqlite" else b""


@each()
async def test_a_backup_from_a_newer_bot_is_refused_and_the_database_left_as_it_was(
    case: Case,
) -> None:
    await _backed_up(case)
    _newer(case.file)
    async with case.backend.open() as storage:
        await storage.update_guild(1001, narration_said="{name} now")  # Not in the backup.
    before = await rows_of(case.backend)
    image = _image(case)
    done = await case.run("restore", str(case.file))
    assert done.code == 1
    assert done.err == (
        f"error: {case.file.name} is from a newer version of the bot (schema version "
        f"{LATEST_VERSION + 1}; this version knows up to {LATEST_VERSION}): use it with that "
        "version, or upgrade this one. Nothing was changed.\n"
    )
    assert await rows_of(case.backend) == before
    if case.backend.name == "sqlite":
        assert _image(case) == image
    _no_leftovers(case)


def _flip_a_value(file: Path) -> None:
    data = bytearray(file.read_bytes())
    at = data.find(b"nah-eve")
    data[at : at + 3] = b"NAH"  # Same length: only the checksum can tell.
    file.write_bytes(data)


def _smash_a_page(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[4096:8192] = b"\xa5" * 4096
    file.write_bytes(data)


def _cut_short(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) * 2 // 3])


def _drop_a_line(file: Path) -> None:
    lines = file.read_bytes().splitlines(keepends=True)
    file.write_bytes(b"".join(lines[:5] + lines[6:]))


def _reorder_lines(file: Path) -> None:
    lines = file.read_bytes().splitlines(keepends=True)
    lines[-3], lines[-2] = lines[-2], lines[-3]
    file.write_bytes(b"".join(lines))


def _garbage(file: Path) -> None:
    file.write_bytes(b"\x00\x01 not a backup at all")


DAMAGE = {
    "backup.db": [_flip_a_value, _smash_a_page, _cut_short, _garbage],
    "backup.jsonl": [_flip_a_value, _cut_short, _drop_a_line, _reorder_lines, _garbage],
}


@pytest.mark.parametrize(
    ("case", "damage"),
    [(("sqlite", name), damage) for name, damages in DAMAGE.items() for damage in damages]
    + [(("postgres", "backup.jsonl"), _flip_a_value), (("postgres", "backup.jsonl"), _cut_short)],
    indirect=["case"],
    ids=lambda c: "-".join(c) if isinstance(c, tuple) else c.__name__.strip("_"),
)
async def test_a_damaged_backup_is_refused_and_the_database_left_as_it_was(
    case: Case, damage: Callable[[Path], None]
) -> None:
    await _backed_up(case)
    damage(case.file)
    async with case.backend.open() as storage:
        await storage.forget_member(501)  # Not in the backup.
    before = await rows_of(case.backend)
    done = await case.run("restore", str(case.file))
    assert done.code == 1
    assert done.err.startswith(f"error: {case.file.name} is damaged or is not a backup of this ")
    assert done.err.endswith(" Nothing was changed.\n")
    assert await rows_of(case.backend) == before
    _no_leftovers(case)


@each([("sqlite", "backup.db")])
async def test_restore_waits_for_the_bot_to_stop(case: Case) -> None:
    await _backed_up(case)
    async with case.backend.open() as running:
        await running.update_guild(1001, narration_said="{name} now")
        before = await rows_of(case.backend)
        done = await case.run("restore", str(case.file))
        assert done.code == 1
        assert "is in use: stop the bot, then restore again. Nothing was changed." in done.err
        assert await rows_of(case.backend) == before
        assert (await running.get_guild(1001)).narration_said == "{name} now"
    _no_leftovers(case)


@each([("sqlite", "backup.db")])
async def test_a_backup_never_overwrites_the_database_itself(case: Case) -> None:
    async with case.backend.open() as storage:
        await populate(storage, usage=3)
    before = await rows_of(case.backend)
    for command in ("backup", "restore"):
        done = await case.run(command, case.backend.target)
        assert done.code == 1
        assert "is the bot's database itself" in done.err
    assert await rows_of(case.backend) == before


@pytest.mark.parametrize("name", ["old.db", "old.jsonl"])
async def test_a_backup_of_an_older_schema_is_restored_and_upgraded(
    tmp_path: Path, name: str
) -> None:
    data_dir = tmp_path / "data"
    old = tmp_path / "old" / "bot.db"
    old.parent.mkdir()
    async with aiosqlite.connect(old, isolation_level=None) as db:
        await migrate(db, 3)
        await db.execute(
            "INSERT INTO guild_settings (guild_id, narration_skip_silent) VALUES (5, 1)"
        )
        await db.execute("INSERT INTO member_settings (user_id, voice) VALUES (6, 'Kore')")
    made = await cli("backup", str(tmp_path / name), url=f"sqlite:///{old}", data_dir=old.parent)
    assert made.code == 0, made.err
    assert "schema version 3" in made.out
    done = await cli("restore", str(tmp_path / name), url="", data_dir=data_dir)
    assert done.code == 0, done.err
    assert f"(schema version 3, upgraded to {LATEST_VERSION})" in done.out
    async with SQLiteStorage(data_dir / "bot.db") as storage:
        assert await storage.schema_version() == LATEST_VERSION
        guild = await storage.get_guild(5)
        assert guild.narration_skip_silent
        assert guild.pronunciations == ()
        assert (await storage.get_member(6)).voice == "Kore"


async def test_a_json_backup_moves_between_backends(tmp_path: Path, postgres_url: str) -> None:
    data_dir = tmp_path / "data"
    sqlite = Backend("sqlite", str(data_dir / "bot.db"))
    postgres = Backend("postgres", postgres_url)
    async with sqlite.open() as storage:
        await populate(storage)
    file = tmp_path / "move.jsonl"
    assert (await cli("backup", str(file), url=database_url(sqlite), data_dir=data_dir)).code == 0
    done = await cli("restore", str(file), url=postgres_url, data_dir=data_dir)
    assert done.code == 0, done.err
    back = tmp_path / "back.jsonl"
    assert (await cli("backup", str(back), url=postgres_url, data_dir=data_dir)).code == 0
    again = Backend("sqlite", str(tmp_path / "again" / "bot.db"))
    done = await cli("restore", str(back), url=database_url(again), data_dir=tmp_path / "again")
    assert done.code == 0, done.err
    assert sqlite_rows_of(Path(again.target)) == sqlite_rows_of(Path(sqlite.target))
    async with sqlite.open() as first, postgres.open() as second:
        for guild in (1001, 1002, 1003):
            assert await first.get_guild(guild) == await second.get_guild(guild)
        for member in (501, 502, 503):
            assert await first.get_member(member) == await second.get_member(member)
        since = T0 - timedelta(days=1)
        totals = [astuple(await storage.usage(since=since)) for storage in (first, second)]
        assert totals[0] == pytest.approx(totals[1])


@each([("sqlite", "copy.db")])
async def test_a_plain_copy_of_the_database_restores_with_a_warning(case: Case) -> None:
    async with case.backend.open() as storage:
        await populate(storage)
    before = await rows_of(case.backend)
    shutil.copyfile(case.backend.target, case.file)  # What the README used to suggest.
    async with case.backend.open() as storage:
        await storage.forget_member(501)
    done = await case.run("restore", str(case.file))
    assert done.code == 0, done.err
    assert "copy.db carries no checksums (a plain copy of the database?)" in done.out
    assert await rows_of(case.backend) == before
