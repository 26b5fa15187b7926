"""A PostgreSQL server restarted under load: callers only ever see StorageError, the outage is
logged once as it starts and once as it ends (not a traceback per failed reconnection), and
usage recorded meanwhile is all stored once the server answers again, in order, with the
quota ledger back to zero. Each test halts and restarts the session's throwaway server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import pytest

from bot.errors import StorageError
from bot.storage import PostgresStorage, UsageRecord
from bot.storage.postgres import RECOVERED
from bot.synthesis.quota import QuotaLedger
from bot.synthesis.scheduler import Attempt
from bot.synthesis.usage import UsageRecorder
from tests.pg_server import PostgresServer

GUILD = 7


@asynccontextmanager
async def _down(server: PostgresServer) -> AsyncIterator[None]:
    """The server halted (clients disconnected mid-statement) and started again on leaving,
    whatever the test did: later tests share it. Started from this thread, not a worker's:
    the server gets SIGINT when the thread that started it ends."""
    await asyncio.to_thread(server.halt)
    try:
        yield
    finally:
        server.resume()


async def _hammer(
    storage: PostgresStorage, workers: int, stop: asyncio.Event
) -> tuple[list[asyncio.Task[None]], list[BaseException]]:
    """Tasks that read and write through `storage` until `stop`, keeping what they raise."""
    errors: list[BaseException] = []

    async def work(user: int) -> None:
        steps: list[Callable[[], Awaitable[object]]] = [
            lambda: storage.update_member(user, temperature=0.5),
            lambda: storage.get_member(user),
            lambda: storage.record_usage(UsageRecord(GUILD, user, datetime.now(UTC), 200, 1, 1, 0)),
            lambda: storage.usage(since=datetime(2000, 1, 1, tzinfo=UTC), user_id=user),
            lambda: storage.forget_member(user + 1000),
        ]
        while not stop.is_set():
            for step in steps:
                try:
                    await step()
                except Exception as exc:
                    errors.append(exc)
                    await asyncio.sleep(0.005)

    return [asyncio.create_task(work(user)) for user in range(workers)], errors


async def _stored(url: str) -> list[tuple[int, datetime]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT user_id, at FROM usage ORDER BY id")
    finally:
        await conn.close()
    return [(row[0], row[1]) for row in rows]


async def _answers(storage: PostgresStorage) -> None:
    for _ in range(200):
        try:
            await storage.get_member(1)
            return
        except StorageError:
            await asyncio.sleep(0.05)
    raise AssertionError("the restarted server never answered")


async def test_a_server_restarted_under_load_only_ever_fails_calls_with_storage_errors(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    async with PostgresStorage(postgres_url, max_connections=8) as storage:
        stop = asyncio.Event()
        tasks, errors = await _hammer(storage, 12, stop)
        try:
            for _ in range(4):  # Enough halts to catch connections handed back as they die.
                await asyncio.sleep(0.3)
                async with _down(postgres_server):
                    await asyncio.sleep(0.2)
            await _answers(storage)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        assert errors, "the halts were not seen"
        assert [e for e in errors if not isinstance(e, StorageError)] == []
        for error in errors:
            assert f"PostgreSQL at {storage.where}" in str(error)
            assert postgres_server.password not in str(error)
            assert error.__cause__ is not None
        # The pool took the restarted server back.
        await storage.update_member(1, voice="Puck")
        assert (await storage.get_member(1)).voice == "Puck"


async def test_an_outage_is_logged_once_as_it_starts_and_once_as_it_ends(
    postgres_server: PostgresServer, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with PostgresStorage(postgres_url) as storage:
        stop = asyncio.Event()
        with caplog.at_level(logging.INFO):
            tasks, errors = await _hammer(storage, 4, stop)
            try:
                await asyncio.sleep(0.2)
                # Long enough for asyncpg to fail to reconnect its idle connection repeatedly.
                async with _down(postgres_server):
                    await asyncio.sleep(3)
                await _answers(storage)
                await asyncio.sleep(RECOVERED + 0.5)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
    assert errors
    ours = [r for r in caplog.records if r.name == "bot.storage.postgres"]
    lines = [(r.levelname, r.getMessage()) for r in ours if "Storage ready" not in r.getMessage()]
    assert len(lines) == 2, lines
    (started_level, started), (ended_level, ended) = lines
    assert started_level == "WARNING"
    assert started.startswith(f"PostgreSQL at {storage.where} is unavailable: ")
    assert ended_level == "INFO"
    assert ended.startswith(f"PostgreSQL at {storage.where} answers again, after ")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asyncpg")] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert postgres_server.password not in caplog.text


def _paid(user: int) -> Attempt:
    return Attempt(user_id=user, guild_id=GUILD, status=200, elapsed=1.0, audio_seconds=2.0)


async def test_usage_recorded_while_the_server_restarts_is_all_stored_in_order(
    postgres_server: PostgresServer, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = QuotaLedger()
    async with PostgresStorage(postgres_url) as storage:
        usage = UsageRecorder(storage, price_per_call=0.005, quota=ledger)
        recorded = 0

        async def record(rounds: int) -> None:
            nonlocal recorded
            for n in range(rounds):
                usage.record_attempt(_paid(n % 3))
                usage.record_cached(n % 3 + 10, GUILD, 1.0)
                recorded += 2
                await asyncio.sleep(0.01)

        with caplog.at_level(logging.INFO, logger="bot.synthesis.usage"):
            await record(20)
            async with _down(postgres_server):
                await record(40)
                # Held, and the paid ones still counted against their members' quotas.
                assert sum(ledger.outstanding(GUILD, user) for user in range(3)) > 0
            await record(20)
            await usage.drain()
        assert len(ledger) == 0
    stored = await _stored(postgres_url)
    assert len(stored) == recorded == 160
    times = [at for _, at in stored]
    assert times == sorted(times)  # Held records were written before the ones behind them.
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == usage.__module__]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert "held and retried" in lines[0][1]
    assert "held records stored, 0 dropped" in lines[1][1]


async def test_usage_held_past_its_bound_drops_the_newest_and_gives_back_their_quota(
    postgres_server: PostgresServer, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = QuotaLedger()
    async with PostgresStorage(postgres_url) as storage:
        usage = UsageRecorder(
            storage, price_per_call=0.005, quota=ledger, max_held=5, retry_delay=0.05
        )
        with caplog.at_level(logging.INFO, logger="bot.synthesis.usage"):
            async with _down(postgres_server):
                for user in range(8):
                    usage.record_attempt(_paid(user))
                await asyncio.sleep(0.2)
                assert (usage.held, usage.dropped) == (5, 3)
                # The oldest five are kept, and still counted against their quotas.
                assert [ledger.outstanding(GUILD, user) for user in range(8)] == [1] * 5 + [0] * 3
            await usage.drain()
        assert len(ledger) == 0
    assert [user for user, _ in await _stored(postgres_url)] == [0, 1, 2, 3, 4]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "newer ones are dropped" in w]) == 1
    assert "5 held records stored, 3 dropped" in caplog.text


async def test_shutdown_gives_up_held_usage_at_its_deadline(
    postgres_server: PostgresServer, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = QuotaLedger()
    async with PostgresStorage(postgres_url, connect_timeout=1) as storage:
        usage = UsageRecorder(storage, price_per_call=0.005, quota=ledger, retry_delay=60)
        async with _down(postgres_server):
            usage.record_attempt(_paid(1))
            usage.record_attempt(_paid(2))
            await asyncio.sleep(0.2)  # Failed once; the next try is a minute away.
            started = asyncio.get_running_loop().time()
            await usage.drain(within=0.5)
            assert asyncio.get_running_loop().time() - started < 5
        assert (usage.held, usage.dropped) == (0, 2)
        assert len(ledger) == 0
    assert "2 usage records could not be stored in 0.5 s and are lost" in caplog.text


async def test_shutdown_tries_held_usage_at_once_rather_than_after_its_back_off(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    ledger = QuotaLedger()
    async with PostgresStorage(postgres_url) as storage:
        usage = UsageRecorder(storage, price_per_call=0.005, quota=ledger, retry_delay=60)
        async with _down(postgres_server):
            usage.record_attempt(_paid(1))
            await asyncio.sleep(0.2)  # Failed once; the next try is a minute away.
        await _answers(storage)
        await usage.drain(within=5)
        assert (usage.held, usage.dropped, len(ledger)) == (0, 0, 0)
    assert len(await _stored(postgres_url)) == 1
