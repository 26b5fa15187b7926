"""What the pipeline needs of a cache, and the cache that keeps nothing.

With caching turned off the pipeline still holds a `Cache`: `NullCache` misses every lookup
and drops every result, so no caller checks for "no cache".
"""

from __future__ import annotations

from typing import Protocol

from bot.audio import Audio
from bot.synthesis.cache.store import CacheStats

__all__ = ["Cache", "NullCache"]


class Cache(Protocol):
    """Finished speech by key; a lookup never raises, a damaged entry is a miss."""

    async def get(self, key: str) -> Audio | None: ...

    async def put(self, key: str, audio: Audio) -> None: ...

    @property
    def stats(self) -> CacheStats: ...


class NullCache:
    """Caching turned off (`CACHE_ENABLED=false`): every lookup misses, nothing is kept."""

    def __init__(self) -> None:
        self._misses = 0

    async def get(self, key: str) -> Audio | None:
        self._misses += 1
        return None

    async def put(self, key: str, audio: Audio) -> None:
        return None

    @property
    def stats(self) -> CacheStats:
        return CacheStats(
            memory_hits=0,
            disk_hits=0,
            misses=self._misses,
            memory_bytes=0,
            memory_items=0,
            disk_bytes=0,
            disk_items=0,
            evictions=0,
            corrupt=0,
        )
