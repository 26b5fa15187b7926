"""The audio cache's shared tier: clips one process paid for, heard by every process.

Each process keeps its own memory and disk cache (`bot.synthesis.cache`); behind them, Redis
holds recent clips for everyone on the key, each for `ttl` seconds (Redis evicts by its own
memory policy too), so a greeting made on one shard is a hit on the others. A Redis that
cannot be reached, or takes longer than `REDIS_BUDGET`, is a miss, never an error and never a
wait past the budget (the cache only saves money and time); it is logged once per outage.
"""

from __future__ import annotations

import json
import logging

from redis.asyncio import Redis

from bot.audio import Audio, AudioFormat
from bot.synthesis.cache import Cache, CacheStats
from bot.synthesis.cluster.link import RedisLink

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

    def __init__(self, local: Cache, redis: Redis | RedisLink, *, prefix: str, ttl: float) -> None:
        self._local = local
        self._link = redis if isinstance(redis, RedisLink) else RedisLink(redis)
        self._prefix = prefix + "clip:"
        self._ttl_ms = max(1, int(ttl * 1000))
        self._down = False
        #: Lookups the shared tier answered (the local tiers counted them as misses).
        self.shared_hits = 0

    async def get(self, key: str) -> Audio | None:
        audio = await self._local.get(key)
        if audio is not None:
            return audio
        redis = self._link.redis
        try:
            value = await self._link.run(lambda: redis.get(self._prefix + key))
        except Exception as exc:
            self._unreachable(exc)
            return None
        self._reachable()
        audio = decode_audio(value)
        if audio is None:
            return None
        self.shared_hits += 1
        await self._local.put(key, audio)
        return audio

    async def put(self, key: str, audio: Audio) -> None:
        await self._local.put(key, audio)
        redis = self._link.redis
        value = encode_audio(audio)
        try:
            await self._link.run(lambda: redis.set(self._prefix + key, value, px=self._ttl_ms))
        except Exception as exc:
            self._unreachable(exc)
            return
        self._reachable()

    @property
    def stats(self) -> CacheStats:
        return self._local.stats

    def _unreachable(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "The shared audio cache in Redis cannot be reached (%s); using this process's "
                "own cache until it answers",
                " ".join(str(exc).split()) or type(exc).__name__,
            )

    def _reachable(self) -> None:
        if self._down:
            self._down = False
            log.info("The shared audio cache in Redis answers again")
