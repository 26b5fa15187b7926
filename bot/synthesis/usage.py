"""Usage accounting: every API call (and every cache hit) recorded per server and member.

Recording happens off the hot path: the scheduler reports synchronously, the database write
runs as a task, and shutdown waits for the writes still pending.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from bot.storage import Storage, UsageRecord, UsageSummary
from bot.synthesis.quota import QuotaLedger
from bot.synthesis.scheduler import Attempt

__all__ = ["UsageRecorder", "day_start", "is_paid", "next_reset", "paid_calls"]

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


def is_paid(status: int | None) -> bool:
    """Whether storage counts an API attempt with this status among `paid_calls`."""
    return status is not None and 200 <= status <= 299


class UsageRecorder:
    """Writes every API attempt and cache hit to storage without making a member wait:
    records are queued as tasks and drained at shutdown, since every call costs money and
    quotas and `/usage` must count it.

    A paid call is counted in `quota` from the moment it is reported until its record is
    written, so a quota check never misses it in between (`bot.synthesis.quota`).
    """

    def __init__(
        self, storage: Storage, *, price_per_call: float, quota: QuotaLedger | None = None
    ) -> None:
        self.storage = storage
        self.price_per_call = price_per_call
        self.quota = quota if quota is not None else QuotaLedger()
        self._pending: set[asyncio.Task[None]] = set()

    def record_attempt(self, attempt: Attempt) -> None:
        """The scheduler's `on_attempt`, told before the ticket's result is delivered: a
        successful call costs the price, a failed one nothing (Segmind bills produced audio)."""
        paid = is_paid(attempt.status)
        if paid:
            self.quota.paid(attempt.guild_id, attempt.user_id)
        self._write(
            UsageRecord(
                guild_id=attempt.guild_id,
                user_id=attempt.user_id,
                at=datetime.now(UTC),
                status=attempt.status,
                latency=attempt.elapsed,
                audio_seconds=attempt.audio_seconds,
                cost=self.price_per_call if attempt.status == 200 else 0.0,
            ),
            paid=paid,
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

    def _write(self, record: UsageRecord, *, paid: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(self._store(record, paid))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _store(self, record: UsageRecord, paid: bool) -> None:
        try:
            if paid:
                async with self.quota.writing(record.guild_id, record.user_id):
                    await self.storage.record_usage(record)
            else:
                await self.storage.record_usage(record)
        except Exception:
            log.exception("Could not record usage")

    async def drain(self) -> None:
        """Wait for the writes still pending (shutdown, tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
