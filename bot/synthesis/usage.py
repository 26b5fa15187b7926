"""Usage accounting: every API call (and every cache hit) recorded per server and member.

Recording happens off the hot path: the scheduler reports synchronously, one writer task
stores the records in the order they came, and shutdown waits for the writes still pending.
While storage is unavailable (a database restart) records are held and retried, not lost:
every call costs money, and quotas and `/usage` must count it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.errors import StorageError
from bot.storage import Storage, UsageRecord, UsageSummary
from bot.synthesis.quota import QuotaLedger
from bot.synthesis.scheduler import Attempt

__all__ = ["UsageRecorder", "day_start", "is_paid", "next_reset", "paid_calls"]

log = logging.getLogger(__name__)

#: Records held while storage is unavailable: ~0.3 kB each, so a few MB at most, hours of a
#: busy bot's calls. Past it the newest are dropped (counted and logged): the oldest already
#: wait in order, and memory must stay bounded however long the outage.
MAX_HELD = 10_000
#: Seconds before the first retry after a failed write; it doubles up to MAX_RETRY_DELAY.
RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 30.0
#: Seconds shutdown waits for held records before giving them up.
DRAIN_TIMEOUT = 10.0


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


@dataclass(frozen=True, slots=True)
class _Held:
    record: UsageRecord
    #: Counted in the quota ledger until written or given up.
    paid: bool


class UsageRecorder:
    """Writes every API attempt and cache hit to storage without making a member wait:
    records are queued for one writer task and drained at shutdown, since every call costs
    money and quotas and `/usage` must count it.

    A write that fails with a StorageError is retried with back-off, the records behind it
    waiting in order (at most `max_held`; past that the newest are dropped, counted in
    `dropped`). The first failure is logged once, and once more when the held records are
    stored. A paid call is counted in `quota` from the moment it is reported until its
    record is written, however long it is held (`bot.synthesis.quota`); a record given up
    is taken off then.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        price_per_call: float,
        quota: QuotaLedger | None = None,
        max_held: int = MAX_HELD,
        retry_delay: float = RETRY_DELAY,
        max_retry_delay: float = MAX_RETRY_DELAY,
    ) -> None:
        self.storage = storage
        self.price_per_call = price_per_call
        self.quota = quota if quota is not None else QuotaLedger()
        self.max_held = max_held
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        #: Records dropped past `max_held`, failing for good, or left at shutdown's deadline.
        self.dropped = 0
        self._held: deque[_Held] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # The current trouble, from the first failed write until nothing is held.
        self._failing = False
        self._stored_late = 0
        self._dropped_now = 0

    @property
    def held(self) -> int:
        """Records waiting to be written (retried while storage is unavailable)."""
        return len(self._held)

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
        held = _Held(record, paid)
        if len(self._held) >= self.max_held:
            if not self._dropped_now:
                log.warning(
                    "%d usage records are waiting to be stored: newer ones are dropped until"
                    " storage catches up, so quotas and costs undercount them.",
                    len(self._held),
                )
            self._dropped_now += 1
            self._give_up(held)
            return
        self._held.append(held)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_held())

    async def _write_held(self) -> None:
        """Store the held records oldest first; a StorageError keeps the oldest at the head
        and waits (back-off, or until `drain` asks to try now) before trying it again."""
        delay = self.retry_delay
        while self._held:
            held = self._held[0]
            try:
                await self._store(held)
            except StorageError as exc:
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "Usage could not be recorded (%s): records are held and retried"
                        " until storage answers.",
                        exc,
                    )
                if not self._wake.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
                delay = min(delay * 2, self.max_retry_delay)
                continue
            except Exception:
                log.exception("Could not record usage; the record is dropped")
                self._held.popleft()
                self._give_up(held)
                continue
            self._held.popleft()
            delay = self.retry_delay
            if self._failing:
                self._stored_late += 1
        self._end_trouble()

    async def _store(self, held: _Held) -> None:
        record = held.record
        if held.paid:
            async with self.quota.writing(record.guild_id, record.user_id):
                await self.storage.record_usage(record)
        else:
            await self.storage.record_usage(record)

    def _give_up(self, held: _Held) -> None:
        self.dropped += 1
        if held.paid:
            self.quota.give_back((held.record.guild_id, held.record.user_id), 1)

    def _end_trouble(self) -> None:
        if self._failing or self._dropped_now:
            log.info(
                "Usage recording caught up: %d held records stored, %d dropped.",
                self._stored_late,
                self._dropped_now,
            )
        self._failing = False
        self._stored_late = self._dropped_now = 0

    async def drain(self, within: float = DRAIN_TIMEOUT) -> None:
        """Wait for the records still held (shutdown, tests), trying a failing write again
        at once rather than after its back-off. What is still held after `within` s is
        given up: counted in `dropped`, logged, and taken off the quota ledger."""
        writer = self._writer
        if writer is None or writer.done():
            return
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(writer), within)
        except TimeoutError:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            lost = len(self._held)
            while self._held:
                self._give_up(self._held.popleft())
            log.warning(
                "%d usage records could not be stored in %g s and are lost"
                " (%d stored late, %d dropped before).",
                lost,
                within,
                self._stored_late,
                self._dropped_now,
            )
            self._failing = False
            self._stored_late = self._dropped_now = 0
