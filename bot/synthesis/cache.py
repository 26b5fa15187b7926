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
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.audio import Audio, AudioFormat
from bot.speech.request import SpeechRequest

__all__ = [
    "CACHE_FORMAT_VERSION",
    "ENTRY_OVERHEAD",
    "AudioCache",
    "CacheStats",
    "cache_key",
]

log = logging.getLogger(__name__)

#: Part of every key and every file header: bump it when keys or the file layout change, and
#: old entries simply stop matching (and age out of the disk bound).
CACHE_FORMAT_VERSION = 1

#: Bytes charged per memory entry on top of its audio, for the key, the object and the index,
#: so that a flood of tiny clips cannot grow memory unbounded.
ENTRY_OVERHEAD = 256

_MIB = 1 << 20
_MAGIC = b"TTSC"
_HEADER = struct.Struct("<4sHI")  # magic, format version, length of the JSON that follows
_MAX_META = 4096  # a real header is ~250 bytes; more means the length field is damaged
_DIGEST_SIZE = 32
_SUFFIX = ".tts"
_TEMP_SUFFIX = ".tmp"
_KEY = re.compile(r"[0-9a-f]{64}")
_SHARD = re.compile(r"[0-9a-f]{2}")
_MAX_RATE = 192_000
_MAX_CHANNELS = 8

_T = TypeVar("_T")


def cache_key(request: SpeechRequest, *, model: str) -> str:
    """The hex SHA-256 of everything that shapes the audio, and of nothing else.

    JSON with sorted keys is unambiguous (no field can bleed into the next, and None stays
    distinct from ""). The temperature goes in as the repr of a float, so 1 and 1.0 match
    but 0.4 and 0.41 do not; adding 0.0 folds -0.0 into 0.0.
    """
    fields = {
        "version": CACHE_FORMAT_VERSION,
        "model": model,
        "text": request.text,
        "voice": request.voice,
        "voice_2": request.voice_2,
        "temperature": repr(float(request.temperature) + 0.0),
    }
    encoded = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(encoded.encode("ascii")).hexdigest()


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


class _CorruptEntryError(Exception):
    """A cache file that does not hold what its header promises."""


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
            audio = await self._run(functools.partial(_read_entry, self._path(key), key, stamp))
        except FileNotFoundError:
            self._forget(key, entry)
            self._misses += 1
            return None
        except _CorruptEntryError as exc:
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
        if not _KEY.fullmatch(key):
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
            await self._run(functools.partial(_wipe, self._dir))

    # --- internals ----------------------------------------------------------------------------

    async def _run(self, call: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _path(self, key: str) -> str:
        return os.path.join(self._dir, key[:2], key + _SUFFIX)

    def _next_stamp(self) -> int:
        self._last_stamp = max(time.time_ns(), self._last_stamp + 1)
        return self._last_stamp

    async def _load(self) -> None:
        found = await self._run(functools.partial(_scan, self._dir))
        found.sort(key=lambda item: (item[2], item[0]))
        for key, size, mtime in found:
            self._disk[key] = _DiskEntry(size)
            self._disk_total += size
            self._last_stamp = max(self._last_stamp, mtime)
        victims = self._evict_disk()
        if victims:
            await self._run(functools.partial(_unlink_all, victims))
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
                await self._run(functools.partial(_unlink_all, [self._path(key)]))

    async def _write(self, key: str, audio: Audio) -> None:
        """Write, index and enforce the bound; the caller holds the disk lock."""
        write = functools.partial(
            _write_entry, self._dir, key, audio, self._next_stamp(), self._disk_limit
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
            await self._run(functools.partial(_unlink_all, victims))

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


# --- file format (runs in the executor) -----------------------------------------------------------


def _encode_entry(key: str, audio: Audio) -> bytes:
    meta = {
        "key": key,
        "format": audio.format.value,
        "sample_rate": audio.sample_rate,
        "channels": audio.channels,
        "duration": float(audio.duration),
        "length": len(audio.data),
        "blake2b": hashlib.blake2b(audio.data, digest_size=_DIGEST_SIZE).hexdigest(),
    }
    header = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("ascii")
    return _HEADER.pack(_MAGIC, CACHE_FORMAT_VERSION, len(header)) + header + audio.data


def _decode_entry(blob: bytes, key: str) -> Audio:
    if len(blob) < _HEADER.size:
        raise _CorruptEntryError(f"{len(blob)} bytes is shorter than the header")
    magic, version, meta_size = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise _CorruptEntryError(f"bad magic {magic!r}")
    if version != CACHE_FORMAT_VERSION:
        raise _CorruptEntryError(f"format version {version}, expected {CACHE_FORMAT_VERSION}")
    start = _HEADER.size + meta_size
    if meta_size > _MAX_META or start > len(blob):
        raise _CorruptEntryError(f"header length {meta_size} does not fit in {len(blob)} bytes")
    try:
        meta = json.loads(blob[_HEADER.size : start])
    except (ValueError, RecursionError) as exc:
        raise _CorruptEntryError(f"unreadable header ({exc})") from None
    if not isinstance(meta, dict):
        raise _CorruptEntryError("header is not a JSON object")
    data = blob[start:]
    try:
        audio = Audio(
            data=data,
            format=AudioFormat(meta["format"]),
            sample_rate=_int(meta, "sample_rate", 1, _MAX_RATE),
            channels=_int(meta, "channels", 1, _MAX_CHANNELS),
            duration=_duration(meta),
        )
        if meta["key"] != key:
            raise ValueError(f"holds key {str(meta['key'])[:12]}")
        if meta["length"] != len(data) or isinstance(meta["length"], bool):
            raise ValueError(f"{len(data)} bytes of audio, header says {meta['length']}")
    except (KeyError, TypeError, ValueError) as exc:
        raise _CorruptEntryError(f"bad header ({type(exc).__name__}: {exc})") from None
    digest = hashlib.blake2b(data, digest_size=_DIGEST_SIZE).hexdigest()
    if meta.get("blake2b") != digest:
        raise _CorruptEntryError("audio does not match its digest")
    return audio


def _int(meta: dict[str, Any], name: str, low: int, high: int) -> int:
    value = meta[name]
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{name} is {value!r}")
    return value


def _duration(meta: dict[str, Any]) -> float:
    value = meta["duration"]
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"duration is {value!r}")
    return float(value)


def _read_entry(path: str, key: str, stamp: int) -> Audio:
    with open(path, "rb") as file:
        blob = file.read()
    audio = _decode_entry(blob, key)
    with contextlib.suppress(OSError):  # the LRU stamp is a hint; the hit stands without it
        os.utime(path, ns=(stamp, stamp))
    return audio


def _write_entry(root: str, key: str, audio: Audio, stamp: int, limit: int) -> int | None:
    """Atomically replace the entry; its size, or None (old copy removed) if over ``limit``."""
    blob = _encode_entry(key, audio)
    shard = os.path.join(root, key[:2])
    final = os.path.join(shard, key + _SUFFIX)
    if len(blob) > limit:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(final)
        return None
    os.makedirs(shard, exist_ok=True)
    # Unique per write, so two puts of one key never share a temp file.
    temp = os.path.join(shard, f"{key}.{uuid.uuid4().hex}{_TEMP_SUFFIX}")
    try:
        with open(temp, "xb") as file:
            file.write(blob)
        os.utime(temp, ns=(stamp, stamp))
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return len(blob)


def _unlink_all(paths: Iterable[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _shards(root: str) -> list[str]:
    with os.scandir(root) as entries:
        return [e.path for e in entries if _SHARD.fullmatch(e.name) and e.is_dir()]


def _scan(root: str) -> list[tuple[str, int, int]]:
    """(key, size, mtime_ns) of each entry file, deleting temp files of interrupted writes."""
    os.makedirs(root, exist_ok=True)
    found: list[tuple[str, int, int]] = []
    stray: list[str] = []
    for shard in _shards(root):
        prefix = os.path.basename(shard)
        with os.scandir(shard) as entries:
            for entry in entries:
                if entry.name.endswith(_TEMP_SUFFIX):
                    stray.append(entry.path)
                    continue
                key = entry.name.removesuffix(_SUFFIX)
                if entry.name.endswith(_SUFFIX) and _KEY.fullmatch(key) and key[:2] == prefix:
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat(follow_symlinks=False)
                        if entry.is_file(follow_symlinks=False):
                            found.append((key, st.st_size, st.st_mtime_ns))
    if stray:
        log.info("audio cache: removing %d unfinished writes", len(stray))
        _unlink_all(stray)
    return found


def _wipe(root: str) -> None:
    try:
        shards = _shards(root)
    except FileNotFoundError:
        return
    for shard in shards:
        doomed: list[str] = []
        with contextlib.suppress(FileNotFoundError), os.scandir(shard) as entries:
            doomed = [e.path for e in entries if e.name.endswith((_SUFFIX, _TEMP_SUFFIX))]
        _unlink_all(doomed)
