"""The audio cache's shared tier: clips one process paid for, heard by every process.

Each process keeps its own memory and disk cache (`bot.synthesis.cache`); behind them, Redis
holds recent clips for everyone on the key, each for `ttl` seconds (Redis evicts by its own
memory policy too), so a greeting made on one shard is a hit on the others. A Redis that
cannot be reached is a miss, never an error: the cache only saves money and time.
"""

from __future__ import annotations

import json
import logging

from redis.asyncio import Redis

from bot.audio import Audio, AudioFormat
from bot.synthesis.cache import Cache, CacheStats

__all__ = ["SharedCache", "decode_audio", "encode_audio"]

log = logging.getLogger(__name__)


def encode_audio(audio: Audio) -> bytes:
    """One value for Redis: a JSON line of the audio's facts, then its bytes."""
    facts = {
        "format": audio.format.value,
        "sample_rate": audio.sample_rate,
        "channels": audio.channels,
        "duration": audio.duration,
    }
    return json.dumps(facts).encode() + b"\n" + audio.data


def decode_audio(value: bytes | str | None) -> Audio | None:
    """The audio `encode_audio` stored, or None for a value that is not one (or none)."""
    if not isinstance(value, bytes):  # a client decoding responses is misconfigured
        return None
    head, sep, data = value.partition(b"\n")
    if not sep:
        return None
    try:
        facts = json.loads(head)
        return Audio(
            data,
            AudioFormat(facts["format"]),
            int(facts["sample_rate"]),
            int(facts["channels"]),
            float(facts["duration"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


class SharedCache:
    """`local` first; on a miss the shared tier, whose hits are kept locally too."""

    def __init__(self, local: Cache, redis: Redis, *, prefix: str, ttl: float) -> None:
        self._local = local
        self._redis = redis
        self._prefix = prefix + "clip:"
        self._ttl_ms = max(1, int(ttl * 1000))
        #: Lookups the shared tier answered (the local tiers counted them as misses).
        self.shared_hits = 0

    async def get(self, key: str) -> Audio | None:
        audio = await self._local.get(key)
        if audio is not None:
            return audio
        try:
            value = await self._redis.get(self._prefix + key)
        except Exception as exc:
            log.warning("The shared audio cache is unreachable: %s", exc)
            return None
        audio = decode_audio(value)
        if audio is None:
            return None
        self.shared_hits += 1
        await self._local.put(key, audio)
        return audio

    async def put(self, key: str, audio: Audio) -> None:
        await self._local.put(key, audio)
        try:
            await self._redis.set(self._prefix + key, encode_audio(audio), px=self._ttl_ms)
        except Exception as exc:
            log.warning("Could not share a clip through the audio cache: %s", exc)

    @property
    def stats(self) -> CacheStats:
        return self._local.stats
