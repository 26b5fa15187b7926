"""The audio cache's shared tier in a real Redis, behind each process's local cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from bot.speech.request import SpeechRequest
from bot.synthesis.cache import AudioCache, NullCache, cache_key
from bot.synthesis.cluster import RedisLink, SharedCache, SharedClips, key_prefix
from bot.synthesis.cluster.clips import decode_audio, encode_audio
from tests.synthesis.scheduler.fakes import AUDIO

PREFIX = key_prefix("sk-cluster-key")
MODEL = "model"


Clients = Callable[[], Redis]


def clips(redis: Redis | RedisLink) -> SharedClips:
    return SharedClips(redis, prefix=PREFIX, ttl=60, budget=1 << 20)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Clients]:
    made: list[Redis] = []

    def make() -> Redis:
        made.append(Redis.from_url(redis_url))
        return made[-1]

    yield make
    for each in made:
        await each.aclose()


async def test_the_shared_tier_answers_what_another_process_cached(client: Clients) -> None:
    made = SharedCache(AudioCache(memory_bytes=1 << 20), clips(client()))
    local = AudioCache(memory_bytes=1 << 20)
    other = SharedCache(local, clips(client()))
    key = cache_key(SpeechRequest(text="hello everyone"), model=MODEL)
    assert await other.get(key) is None
    await made.put(key, AUDIO)
    assert await other.get(key) == AUDIO
    assert other.shared_hits == 1
    assert await local.get(key) == AUDIO  # kept locally from then on


async def test_an_unreachable_shared_tier_is_a_miss() -> None:
    dead = RedisLink(Redis.from_url("redis://127.0.0.1:1/0"))
    cache = SharedCache(NullCache(), clips(dead))
    try:
        assert await cache.get("k") is None
        await cache.put("k", AUDIO)  # logged, not raised
        assert dead.down
    finally:
        await dead.close()


def test_stored_audio_round_trips_and_garbage_is_none() -> None:
    assert decode_audio(encode_audio(AUDIO)) == AUDIO
    assert decode_audio(b"not audio") is None
    assert decode_audio(b'{"format": "flac"}\n...') is None
    assert decode_audio(None) is None


async def test_a_new_take_replaces_the_shared_clip_but_the_same_bytes_are_not_sent_again(
    client: Clients,
) -> None:
    redis = client()
    cache = SharedCache(AudioCache(memory_bytes=1 << 20), clips(redis))
    key = cache_key(SpeechRequest(text="hello everyone"), model=MODEL)
    await cache.put(key, AUDIO)
    await redis.delete(cache.clips.clip_key(key))  # were it sent again, it would be back
    await cache.put(key, AUDIO)
    assert await redis.get(cache.clips.clip_key(key)) is None
    take = replace(AUDIO, data=AUDIO.data + b"\0")  # `fresh`: other bytes for the same key
    await cache.put(key, take)
    assert decode_audio(await redis.get(cache.clips.clip_key(key))) == take


async def test_clips_whose_hour_is_over_leave_the_books(client: Clients) -> None:
    """Scaled down: clips live 1 s. The books of clips that expired must not take room from
    new ones while the books themselves live on (stores keep coming)."""
    short = SharedClips(client(), prefix=PREFIX, ttl=1.0, budget=1 << 20)
    for n in range(5):
        await short.store(f"{n:064x}", AUDIO)
    await asyncio.sleep(0.7)
    await short.store(f"{7:064x}", AUDIO)
    await asyncio.sleep(0.5)  # the first five are over, the one stored at 0.7 s is not
    await short.store(f"{9:064x}", AUDIO)
    assert await short.held() == 2 * short.cost(encode_audio(AUDIO))
