"""Usage accounting and concurrency against each real backend: windows, filters, top members,
/forget-me, and no lost writes from many tasks or two connections."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bot.storage import (
    GuildSettings,
    MemberSettings,
    Storage,
    UsageRecord,
    UsageSummary,
)
from tests.storage.backends import Backend

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=1)


def record(
    user_id: int,
    guild_id: int | None = 10,
    *,
    at: datetime = NOW,
    status: int | None = 200,
    audio: float = 2.0,
    cost: float = 0.005,
    cached: bool = False,
) -> UsageRecord:
    return UsageRecord(guild_id, user_id, at, status, 1.5, audio, cost, cached)


async def test_summaries_filter_by_member_server_and_window(storage: Storage) -> None:
    for item in (
        record(1, at=SINCE - timedelta(seconds=1)),  # Just before the window: left out.
        record(1, at=SINCE),  # Exactly at the start: counted.
        record(1, status=500, audio=0, cost=0),
        record(1, guild_id=20, status=None, audio=0, cost=0),
        record(1, guild_id=None, audio=30.0),  # A direct message.
        record(2, status=429, audio=0, cost=0),
        record(2, cached=True, cost=0),
    ):
        await storage.record_usage(item)

    assert await storage.usage(since=SINCE) == UsageSummary(6, 3, 34.0, 0.01, 1)
    assert await storage.usage(since=SINCE, guild_id=10) == UsageSummary(4, 2, 4.0, 0.005, 1)
    assert await storage.usage(since=SINCE, user_id=1) == UsageSummary(4, 2, 32.0, 0.01, 0)
    assert await storage.usage(since=SINCE, guild_id=10, user_id=2) == UsageSummary(
        2, 1, 2.0, 0.0, 1
    )
    everything = await storage.usage(since=SINCE - timedelta(days=1))
    assert everything.calls == 7
    assert everything.api_calls == 6
    assert everything.audio_minutes == pytest.approx(36 / 60)
    assert await storage.usage(since=NOW + timedelta(seconds=1)) == UsageSummary()


async def test_windows_are_absolute_time_whatever_the_zone(storage: Storage) -> None:
    plus_two = timezone(timedelta(hours=2))
    await storage.record_usage(record(1, at=NOW.astimezone(plus_two)))
    assert (await storage.usage(since=NOW)).calls == 1
    assert (await storage.usage(since=(NOW + timedelta(seconds=1)).astimezone(plus_two))).calls == 0


async def test_naive_datetimes_are_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        record(1, at=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.usage(since=datetime(2025, 1, 1))


async def test_top_users_orders_by_requests_then_cost(storage: Storage) -> None:
    batches = [
        *(record(1) for _ in range(3)),
        *(record(2) for _ in range(5)),
        *(record(3, cost=0.01) for _ in range(3)),  # Ties with member 1, cost more.
        record(4),
        *(record(5, guild_id=20) for _ in range(9)),  # Another server.
        *(record(6, at=SINCE - timedelta(hours=1)) for _ in range(9)),  # Before the window.
    ]
    for item in batches:
        await storage.record_usage(item)
    top = await storage.top_users(10, SINCE)
    assert [user for user, _ in top] == [2, 3, 1, 4]
    assert top[0][1] == UsageSummary(5, 0, 10.0, 0.025, 0)
    assert [user for user, _ in await storage.top_users(10, SINCE, limit=2)] == [2, 3]
    assert await storage.top_users(30, SINCE) == []
    with pytest.raises(ValueError, match="limit"):
        await storage.top_users(10, SINCE, limit=0)


async def test_forget_member_removes_only_that_member(storage: Storage) -> None:
    for user in (1, 2):
        await storage.update_member(user, voice="Puck", style="calm")
        for guild in (10, 20, None):
            await storage.record_usage(record(user, guild))
    await storage.update_guild(10, daily_quota=4)

    assert await storage.forget_member(1) == 4  # One settings row, three usage rows.
    assert await storage.get_member(1) == MemberSettings.defaults(1)
    assert await storage.usage(since=SINCE, user_id=1) == UsageSummary()
    assert await storage.get_member(2) == MemberSettings(2, "Puck", None, "calm")
    assert (await storage.usage(since=SINCE, user_id=2)).calls == 3
    assert (await storage.get_guild(10)).daily_quota == 4
    assert await storage.forget_member(1) == 0


_FIELD_VALUES: dict[str, Any] = {
    "narration_channel_id": 111,
    "narration_voice_only": False,
    "narration_skip_prefix": "!",
    "narration_max_length": 120,
    "narration_emoji": "drop",
    "narration_say_names": False,
    "max_text_length": 500,
    "user_cooldown": 9.5,
    "daily_quota": 7,
    "allowed_role_id": 222,
    "allow_files": False,
    "allow_voice": False,
}


def _all_changed(guild_id: int) -> GuildSettings:
    return dataclasses.replace(GuildSettings.defaults(guild_id), **_FIELD_VALUES)


async def test_concurrent_partial_updates_and_records_lose_nothing(
    storage: Storage,
) -> None:
    guilds = range(1, 6)
    updates = [
        storage.update_guild(guild, **{name: value})
        for guild in guilds
        for name, value in _FIELD_VALUES.items()
    ]
    members = [
        storage.update_member(user, **change)
        for user in range(100, 110)
        for change in ({"voice": "Kore"}, {"temperature": 1.1}, {"style": "pirate"})
    ]
    records = [storage.record_usage(record(n % 7, 10 + n % 3, cost=0.25)) for n in range(200)]
    await asyncio.gather(*updates, *members, *records)

    for guild in guilds:
        assert await storage.get_guild(guild) == _all_changed(guild)
    for user in range(100, 110):
        assert await storage.get_member(user) == MemberSettings(user, "Kore", 1.1, "pirate")
    total = await storage.usage(since=SINCE)
    assert (total.calls, total.cost) == (200, 50.0)
    assert sum(s.calls for _, s in await storage.top_users(10, SINCE, limit=10)) == 67


async def test_two_connections_writing_at_once_lose_nothing(backend: Backend) -> None:
    async with backend.open() as first, backend.open() as second:
        names = list(_FIELD_VALUES)
        await asyncio.gather(
            *(
                (first if i % 2 else second).update_guild(1, **{name: _FIELD_VALUES[name]})
                for i, name in enumerate(names)
            ),
            *(first.record_usage(record(1)) for _ in range(100)),
            *(second.record_usage(record(2)) for _ in range(100)),
        )
        for reader in (first, second):
            assert await reader.get_guild(1) == _all_changed(1)
            assert (await reader.usage(since=SINCE)).calls == 200
            assert (await reader.usage(since=SINCE, user_id=2)).calls == 100


async def test_daily_usage_is_per_utc_day_for_one_server(storage: Storage) -> None:
    from datetime import date

    late = datetime(2025, 3, 9, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 10 Mar, UTC.
    for item in (
        record(1, at=datetime(2025, 3, 8, 0, 0, 1, tzinfo=UTC)),
        record(1, at=datetime(2025, 3, 8, 23, 59, 59, tzinfo=UTC), cached=True, cost=0.0),
        record(2, at=late),
        record(2, at=NOW, status=500),
        record(3, guild_id=11, at=NOW),  # Another server's.
        record(3, at=datetime(2025, 3, 1, tzinfo=UTC)),  # Before the window.
    ):
        await storage.record_usage(item)
    days = await storage.daily_usage(10, datetime(2025, 3, 5, tzinfo=UTC))
    assert [day for day, _ in days] == [date(2025, 3, 8), date(2025, 3, 10)]
    first, second = (summary for _, summary in days)
    assert (first.calls, first.cached, first.api_calls) == (2, 1, 1)
    assert first.cost == pytest.approx(0.005)
    assert (second.calls, second.failures, second.cached) == (2, 1, 0)
    assert await storage.daily_usage(12, SINCE) == []
