"""A two-level (memory, then disk) cache of finished speech, keyed by what shaped the audio.

Each Gemini TTS call through Segmind costs money and takes about 18 s, while greetings and
narration lines repeat: a hit must come back in milliseconds. The package's face; the parts
are the key (`key`), the tiers (`store`), the disk format (`files`) and the null cache.
"""

from __future__ import annotations

from bot.synthesis.cache.base import Cache, NullCache
from bot.synthesis.cache.key import CACHE_FORMAT_VERSION, cache_key
from bot.synthesis.cache.store import ENTRY_OVERHEAD, AudioCache, CacheStats

__all__ = [
    "CACHE_FORMAT_VERSION",
    "ENTRY_OVERHEAD",
    "AudioCache",
    "Cache",
    "CacheStats",
    "NullCache",
    "cache_key",
]
