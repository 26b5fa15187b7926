"""A two-level (memory, then disk) cache of finished speech, keyed by what shaped the audio.

Each Gemini TTS call through Segmind costs money and takes about 18 s, while greetings and
narration lines repeat: a hit must come back in milliseconds. Values are stored exactly as
the bot posts and plays them (Ogg Opus), so a hit needs no transcoding.

One process owns a cache directory. Disk entries are written to a unique temp file and
renamed into place, so a reader sees a whole entry or none; every read is validated (magic,
version, header, lengths, digest), so a damaged file is a miss, never a crash or noise.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from bot.audio import Audio
from bot.synthesis.cache import files
from bot.synthesis.cache.files import KEY, SUFFIX, CorruptEntryError

__all__ = ["ENTRY_OVERHEAD", "AudioCache", "CacheStats"]

log = logging.getLogger(__name__)

#: Bytes charged per memory entry on top of its audio, for the key, the object and the index,
#: so that a flood of tiny clips cannot grow memory unbounded.
ENTRY_OVERHEAD = 256

_MIB = 1 << 20
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot for logs and the owner's status command.

    Hits and misses count `get` outcomes (and `get_memory` hits); ``evictions`` counts entries
    dropped to respect either byte bound; ``corrupt`` counts damaged disk entries found.
    """

    memory_hits: int
    disk_hits: int
    misses: int
    memory_bytes: int
    memory_items: int
    disk_bytes: int
    disk_items: int
    evictions: int
    corrupt: int


@dataclass(eq=False, slots=True)
class _DiskEntry:
    """An indexed file; compared by identity, so a slow reader never drops a newer entry."""

    size: int


class AudioCache:
    """Least-recently-used memory and disk tiers, each bounded in bytes.

    Safe for any number of concurrent calls from one event loop: the index lives on the loop,
    file I/O runs in the executor, and disk writes and deletions are serialised by one lock
    (they take about a millisecond; synthesis takes 18 s). Reads take no lock.
    """

    def __init__(
        self,
        *,
        memory_bytes: int = 64 * _MIB,
        disk_dir: Path | None = None,
        disk_bytes: int = 512 * _MIB,
        executor: Executor | None = None,
    ) -> None:
        if memory_bytes < 0 or disk_bytes < 0:
            raise ValueError("cache bounds must not be negative")
        self._memory_limit = memory_bytes
        self._disk_dir = disk_dir
        self._dir = os.fspath(disk_dir) if disk_dir is not None else ""
        self._disk_limit = disk_bytes
        self._executor = executor
        self._memory: OrderedDict[str, Audio] = OrderedDict()
        self._memory_total = 0
        self._disk: OrderedDict[str, _DiskEntry] = OrderedDict()
        self._disk_total = 0
        self._opened = disk_dir is None
        self._open_lock = asyncio.Lock()
        self._disk_lock = asyncio.Lock()
        # The newest put per key, so superseded writes are skipped and the last put wins.
        self._latest_put: dict[str, int] = {}
        self._puts = 0
        self._writing: set[asyncio.Future[None]] = set()
        # Bumped by clear(), so a read started before it cannot bring an entry back.
        self._epoch = 0
        # File mtimes carry the LRU order across restarts; explicit, strictly increasing
        # stamps keep it exact where the kernel's coarse clock would tie.
        self._last_stamp = 0
        self._memory_hits = self._disk_hits = self._misses = 0
        self._evictions = self._corrupt = 0

    @property
    def stats(self) -> CacheStats:
        return CacheStats(
            memory_hits=self._memory_hits,
            disk_hits=self._disk_hits,
            misses=self._misses,
            memory_bytes=self._memory_total,
            memory_items=len(self._memory),
            disk_bytes=self._disk_total,
            disk_items=len(self._disk),
            evictions=self._evictions,
            corrupt=self._corrupt,
        )

    async def open(self) -> None:
        """Index the directory left by earlier runs; `get` and `put` call this if needed.

        Files are indexed by size and mtime only (validating 512 MiB would delay startup);
        each is validated when first read. Leftover temp files are from interrupted writes.
        """
        if self._opened:
            return
        async with self._open_lock:
            if not self._opened:  # another caller may have opened it while this one waited
                await self._load()
                self._opened = True

    def get_memory(self, key: str) -> Audio | None:
        """The memory tier alone, without awaiting: for callers that must not yield."""
        audio = self._memory.get(key)
        if audio is not None:
            self._memory.move_to_end(key)
            self._memory_hits += 1
        return audio

    async def get(self, key: str) -> Audio | None:
        """The cached audio, or None; a damaged or vanished file is a miss, never an error."""
        audio = self.get_memory(key)
        if audio is not None:
            return audio
        if self._disk_dir is None:
            self._misses += 1
            return None
        entry = self._disk.get(key) if await self._try_open() else None
        if entry is None:
            self._misses += 1
            return None
        # Touched before the read, so the index order and the file mtimes agree.
        self._disk.move_to_end(key)
        stamp = self._next_stamp()
        epoch = self._epoch
        try:
            audio = await self._run(
                functools.partial(files.read_entry, self._path(key), key, stamp)
            )
        except FileNotFoundError:
            self._forget(key, entry)
            self._misses += 1
            return None
        except CorruptEntryError as exc:
            log.warning("audio cache: dropping damaged entry %s: %s", key[:12], exc)
            self._corrupt += 1
            self._misses += 1
            await self._discard(key, entry)
            return None
        except OSError as exc:
            log.warning("audio cache: cannot read entry %s: %s", key[:12], exc)
            self._misses += 1
            return None
        self._disk_hits += 1
        if epoch == self._epoch and key not in self._memory:
            self._remember(key, audio)
        return audio

    async def put(self, key: str, audio: Audio) -> None:
        """Keep ``audio`` under ``key``; returns once it is on disk. Disk trouble is logged,
        never raised: the clip was paid for, and losing the cache copy must not lose it.

        The write is shielded: a caller cancelled mid-write (a member's command, shutdown)
        must not leave a file written but unindexed, or the write lock released early.
        """
        if not KEY.fullmatch(key):
            raise ValueError(f"not a cache key (64 lowercase hex digits): {key!r}")
        self._remember(key, audio)
        if self._disk_dir is None:
            return
        self._puts += 1
        self._latest_put[key] = self._puts
        task = asyncio.ensure_future(self._store(key, audio, self._puts))
        self._writing.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._writing.discard)
        await asyncio.shield(task)

    async def clear(self) -> None:
        """Drop every entry, in memory and on disk (hit and miss counts are kept)."""
        self._epoch += 1
        self._memory.clear()
        self._memory_total = 0
        if self._disk_dir is None:
            return
        await self.open()
        async with self._disk_lock:
            self._disk.clear()
            self._disk_total = 0
            await self._run(functools.partial(files.wipe, self._dir))

    # --- internals ----------------------------------------------------------------------------

    async def _run(self, call: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _path(self, key: str) -> str:
        return os.path.join(self._dir, key[:2], key + SUFFIX)

    def _next_stamp(self) -> int:
        self._last_stamp = max(time.time_ns(), self._last_stamp + 1)
        return self._last_stamp

    async def _load(self) -> None:
        found = await self._run(functools.partial(files.scan, self._dir))
        found.sort(key=lambda item: (item[2], item[0]))
        for key, size, mtime in found:
            self._disk[key] = _DiskEntry(size)
            self._disk_total += size
            self._last_stamp = max(self._last_stamp, mtime)
        victims = self._evict_disk()
        if victims:
            await self._run(functools.partial(files.unlink_all, victims))
        log.debug("audio cache: %d files, %d bytes", len(self._disk), self._disk_total)

    async def _store(self, key: str, audio: Audio, generation: int) -> None:
        try:
            if not await self._try_open():
                return
            # The lock is FIFO, so the newest put for a key writes last and the older ones
            # still queued are skipped. A clear() called meanwhile queues behind this write.
            async with self._disk_lock:
                if self._latest_put.get(key) == generation:
                    await self._write(key, audio)
        finally:
            if self._latest_put.get(key) == generation:
                del self._latest_put[key]

    async def _try_open(self) -> bool:
        try:
            await self.open()
        except OSError as exc:
            log.warning("audio cache: cannot open %s: %s", self._dir, exc)
            return False
        return True

    def _remember(self, key: str, audio: Audio) -> None:
        # Only the encoded bytes are kept and charged: samples a check decoded (ten times the
        # size for Ogg Opus) would make the byte bound a fiction.
        if audio.decoded is not None:
            audio = replace(audio, decoded=None)
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_total -= _cost(old)
        cost = _cost(audio)
        if cost > self._memory_limit:
            return
        self._memory[key] = audio
        self._memory_total += cost
        while self._memory_total > self._memory_limit:
            _, victim = self._memory.popitem(last=False)
            self._memory_total -= _cost(victim)
            self._evictions += 1

    def _forget(self, key: str, entry: _DiskEntry) -> bool:
        """Unindex ``entry`` if it is still the current one for ``key``."""
        if self._disk.get(key) is not entry:
            return False
        del self._disk[key]
        self._disk_total -= entry.size
        return True

    async def _discard(self, key: str, entry: _DiskEntry) -> None:
        # Under the lock, so a put that replaced the file meanwhile is not deleted with it.
        async with self._disk_lock:
            if self._forget(key, entry):
                await self._run(functools.partial(files.unlink_all, [self._path(key)]))

    async def _write(self, key: str, audio: Audio) -> None:
        """Write, index and enforce the bound; the caller holds the disk lock."""
        write = functools.partial(
            files.write_entry, self._dir, key, audio, self._next_stamp(), self._disk_limit
        )
        try:
            size = await self._run(write)
        except OSError as exc:
            log.warning("audio cache: cannot write entry %s: %s", key[:12], exc)
            return
        old = self._disk.pop(key, None)
        if old is not None:
            self._disk_total -= old.size
        if size is None:  # larger than the whole bound: not kept, and the old copy is gone
            return
        self._disk[key] = _DiskEntry(size)
        self._disk_total += size
        victims = self._evict_disk()
        if victims:
            await self._run(functools.partial(files.unlink_all, victims))

    def _evict_disk(self) -> list[str]:
        """Unindex least recently used files until within the bound; returns their paths."""
        victims: list[str] = []
        while self._disk_total > self._disk_limit and self._disk:
            key, entry = self._disk.popitem(last=False)
            self._disk_total -= entry.size
            victims.append(self._path(key))
        self._evictions += len(victims)
        return victims


def _cost(audio: Audio) -> int:
    return len(audio.data) + ENTRY_OVERHEAD
