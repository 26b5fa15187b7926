"""The cache holds what it charges for, never reaches outside its directory, and never stops
the bot from starting; coalesced requests count as uses (issue 11, points 1 and 14)."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import audio
from bot.audio import Audio, AudioFormat
from bot.config import load_settings
from bot.services import open_cache
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest, build_request
from bot.storage import SQLiteStorage
from bot.synthesis.cache import AudioCache, cache_key
from bot.synthesis.scheduler import Scheduler, SchedulerConfig
from bot.synthesis.stream import SpeechSource, SpeechStream
from bot.synthesis.usage import UsageRecorder
from tests.signals import tone

OPUS = audio.encode_ogg_opus(tone(2.0))


def checked_ogg() -> Audio:
    """Ogg Opus as the client hands it on: with the samples its check decoded attached."""
    found = audio.probe(OPUS, AudioFormat.OGG)
    assert found.decoded is not None
    return found


def key(n: int) -> str:
    return cache_key(build_request(f"line {n}"), model="m")


# --- 1. the memory tier counts what it really holds ---------------------------------------------


async def test_the_memory_tier_keeps_only_the_bytes_it_charges_for() -> None:
    cache = AudioCache(memory_bytes=1 << 20)
    await cache.put(key(1), checked_ogg())
    held = cache.get_memory(key(1))
    assert held is not None
    assert held.decoded is None
    assert held.data == OPUS


async def test_passed_through_ogg_opus_drops_its_decoded_samples() -> None:
    scheduler = Scheduler(lambda r: asyncio.sleep(0, checked_ogg()), SchedulerConfig(rpm=100))
    source = SpeechSource(scheduler, model="m")
    normalized = await source.normalize(checked_ogg())
    assert normalized.decoded is None
    assert audio.to_ogg_opus(checked_ogg()).decoded is None


# --- 14. never outside the cache directory; never fatal at startup ------------------------------


async def test_eviction_never_follows_a_symlinked_shard(tmp_path: Path) -> None:
    root, outside = tmp_path / "cache", tmp_path / "precious"
    outside.mkdir()
    victim_key = key(1)
    victim = outside / f"{victim_key}.tts"
    victim.write_bytes(b"the operator's file")
    root.mkdir()
    (root / victim_key[:2]).symlink_to(outside, target_is_directory=True)
    cache = AudioCache(memory_bytes=1 << 20, disk_dir=root, disk_bytes=len(OPUS) * 3)
    await cache.open()
    assert cache.stats.disk_items == 0  # the symlinked shard is not indexed
    for n in range(1, 8):  # more than the bound holds: eviction runs, put 1 goes through it
        await cache.put(key(n), checked_ogg())
    assert await cache.get(victim_key) is not None  # from memory; never read through the link
    await cache.clear()
    assert victim.read_bytes() == b"the operator's file"
    assert os.listdir(outside) == [victim.name]


async def test_an_unusable_cache_directory_leaves_the_memory_tier(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    settings = load_settings(env_file=None, data_dir=tmp_path)
    cache = await open_cache(settings)
    assert isinstance(cache, AudioCache)
    assert any(r.levelno == logging.WARNING and "memory" in r.getMessage() for r in caplog.records)
    await cache.put(key(1), checked_ogg())
    assert await cache.get(key(1)) is not None


# --- 14. requests that join a call in flight count as free uses --------------------------------


async def test_coalesced_requests_are_recorded_as_free_uses(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def synth(request: SpeechRequest) -> Audio:
        await gate.wait()
        return audio.probe(audio.encode_wav(tone(0.5)), AudioFormat.WAV)

    scheduler = Scheduler(
        synth, SchedulerConfig(rpm=1000, user_cooldown=0, max_waiting_per_user=50)
    )
    scheduler.start()
    async with SQLiteStorage(tmp_path / "bot.db") as storage:
        usage = UsageRecorder(storage, price_per_call=0.005)
        source = SpeechSource(scheduler, model="m", usage=usage)

        async def say(user: int) -> list[Audio]:
            stream = SpeechStream(source, Requester(user, guild_id=7), [build_request("Hi all")])
            return await (await stream.start()).collect()

        waits = [asyncio.create_task(say(user)) for user in range(5)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(*waits)
        await source.drain()
        await usage.drain()
        summary = await storage.usage(since=datetime.now(UTC) - timedelta(hours=1), guild_id=7)
        await scheduler.close(grace=0)
    assert source.coalesced == 4
    assert summary.cached == 4
    assert summary.cost == 0
