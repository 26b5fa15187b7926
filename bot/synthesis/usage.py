"""Usage accounting: every API call (and every cache hit) recorded per server and member.

Recording happens off the hot path: the scheduler reports synchronously, the database write
runs as a task, and shutdown waits for the writes still pending.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from bot.storage import Storage, UsageRecord, UsageSummary
from bot.synthesis.scheduler import Attempt

__all__ = ["UsageRecorder", "day_start", "next_reset", "paid_calls"]

log = logging.getLogger(__name__)


def day_start(now: datetime | None = None) -> datetime:
    """Midnight UTC today: daily quotas and "today" reports reset then, for everyone alike."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def next_reset(now: datetime | None = None) -> datetime:
    return day_start(now) + timedelta(days=1)


def paid_calls(summary: UsageSummary) -> int:
    """Calls that produced audio from the API, the ones a quota limits."""
    return summary.api_calls - summary.failures


class UsageRecorder:
    """Writes every API attempt and cache hit to storage without making a member wait:
    records are queued as tasks and drained at shutdown, since every call costs money and
    quotas and `/usage` must count it."""

    def __init__(self, storage: Storage, *, price_per_call: float) -> None:
        self.storage = storage
        self.price_per_call = price_per_call
        self._pending: set[asyncio.Task[None]] = set()

    def record_attempt(self, attempt: Attempt) -> None:
        """The scheduler's `on_attempt`: a successful call costs the price, a failed one
        nothing (Segmind bills produced audio)."""
        self._write(
            UsageRecord(
                guild_id=attempt.guild_id,
                user_id=attempt.user_id,
                at=datetime.now(UTC),
                status=attempt.status,
                latency=attempt.elapsed,
                audio_seconds=attempt.audio_seconds,
                cost=self.price_per_call if attempt.status == 200 else 0.0,
            )
        )

    def record_cached(self, user_id: int, guild_id: int | None, audio_seconds: float) -> None:
        self._write(
            UsageRecord(
                guild_id=guild_id,
                user_id=user_id,
                at=datetime.now(UTC),
                status=200,
                latency=0.0,
                audio_seconds=audio_seconds,
                cost=0.0,
                cached=True,
            )
        )

    def _write(self, record: UsageRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._store(record))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _store(self, record: UsageRecord) -> None:
        try:
            await self.storage.record_usage(record)
        except Exception:
            log.exception("Could not record usage")

    async def drain(self) -> None:
        """Wait for the writes still pending (shutdown, tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
