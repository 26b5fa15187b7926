"""The audio cache's shared tier: clips one process paid for, heard by every process.

Each process keeps its own memory and disk cache (`bot.synthesis.cache`); behind them, Redis
holds recent clips for everyone on the key (`clips.SharedClips`: each for an hour, all within
`CACHE_SHARED_MB` by the bot's own count), so a greeting made on one shard is a hit on the
others. A Redis that cannot be reached, or takes longer than `REDIS_BUDGET`, is a miss, never
an error and never a wait past the budget (the cache only saves money and time); it is logged
once per outage.
"""

from __future__ import annotations

import logging

from bot.audio import Audio
from bot.synthesis.cache import Cache, CacheStats
from bot.synthesis.cluster.clips import SharedClips
from bot.synthesis.cluster.link import OutageNotice

__all__ = ["SharedCache"]

log = logging.getLogger(__name__)


class SharedCache:
    """`local` first; on a miss the shared tier, whose hits are kept locally too."""

    def __init__(self, local: Cache, clips: SharedClips) -> None:
        self._local = local
        self.clips = clips
        self._notice = OutageNotice(
            log,
            lost="The shared audio cache in Redis cannot be reached (%s); using this process's "
            "own cache until it answers",
            back="The shared audio cache in Redis answers again",
        )
        #: Lookups the shared tier answered (the local tiers counted them as misses).
        self.shared_hits = 0

    async def get(self, key: str) -> Audio | None:
        audio = await self._local.get(key)
        if audio is not None:
            return audio
        try:
            audio = await self.clips.fetch(key)
        except Exception as exc:
            self._notice.lost(exc)
            return None
        self._notice.back()
        if audio is None:
            return None
        self.shared_hits += 1
        await self._local.put(key, audio)
        return audio

    async def put(self, key: str, audio: Audio) -> None:
        """Kept locally; sent to Redis unless it came from there or was just stored there
        (as a shared call's answer), or is too big for the tier's budget."""
        await self._local.put(key, audio)
        try:
            await self.clips.store(key, audio)
        except Exception as exc:
            self._notice.lost(exc)
            return
        self._notice.back()

    @property
    def stats(self) -> CacheStats:
        return self._local.stats
