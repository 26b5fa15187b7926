"""The disk tier's file format and file operations; they run in an executor, off the loop.

Entries are written to a unique temp file and renamed into place, so a reader sees a whole
entry or none; every read is validated (magic, version, header, lengths, digest), so a
damaged file is a miss, never a crash or noise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import stat
import struct
import uuid
from collections.abc import Iterable
from typing import Any

from bot.audio import Audio, AudioFormat
from bot.synthesis.cache.key import CACHE_FORMAT_VERSION

__all__ = [
    "KEY",
    "SUFFIX",
    "TEMP_SUFFIX",
    "CorruptEntryError",
    "check_writable",
    "read_entry",
    "scan",
    "unlink_all",
    "wipe",
    "write_entry",
]

log = logging.getLogger(__name__)

SUFFIX = ".tts"
TEMP_SUFFIX = ".tmp"
KEY = re.compile(r"[0-9a-f]{64}")
_MAGIC = b"TTSC"
_HEADER = struct.Struct("<4sHI")  # magic, format version, length of the JSON that follows
_MAX_META = 4096  # a real header is ~250 bytes; more means the length field is damaged
_DIGEST_SIZE = 32
_SHARD = re.compile(r"[0-9a-f]{2}")
_MAX_RATE = 192_000
_MAX_CHANNELS = 8


class CorruptEntryError(Exception):
    """A cache file that does not hold what its header promises."""


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
        raise CorruptEntryError(f"{len(blob)} bytes is shorter than the header")
    magic, version, meta_size = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise CorruptEntryError(f"bad magic {magic!r}")
    if version != CACHE_FORMAT_VERSION:
        raise CorruptEntryError(f"format version {version}, expected {CACHE_FORMAT_VERSION}")
    start = _HEADER.size + meta_size
    if meta_size > _MAX_META or start > len(blob):
        raise CorruptEntryError(f"header length {meta_size} does not fit in {len(blob)} bytes")
    try:
        meta = json.loads(blob[_HEADER.size : start])
    except (ValueError, RecursionError) as exc:
        raise CorruptEntryError(f"unreadable header ({exc})") from None
    if not isinstance(meta, dict):
        raise CorruptEntryError("header is not a JSON object")
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
        raise CorruptEntryError(f"bad header ({type(exc).__name__}: {exc})") from None
    digest = hashlib.blake2b(data, digest_size=_DIGEST_SIZE).hexdigest()
    if meta.get("blake2b") != digest:
        raise CorruptEntryError("audio does not match its digest")
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


def _plain_dir(path: str) -> bool:
    """A directory that is not a symlink: the cache tree is never followed out of itself."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _inside(path: str) -> None:
    """Refuse a path whose shard directory is a symlink (it could point anywhere)."""
    shard = os.path.dirname(path)
    if os.path.lexists(shard) and not _plain_dir(shard):
        raise OSError(f"{shard} is not a plain directory (a symlink?); not following it")


def read_entry(path: str, key: str, stamp: int) -> Audio:
    _inside(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with open(fd, "rb") as file:
        blob = file.read()
    audio = _decode_entry(blob, key)
    with contextlib.suppress(OSError):  # the LRU stamp is a hint; the hit stands without it
        os.utime(path, ns=(stamp, stamp))
    return audio


def write_entry(root: str, key: str, audio: Audio, stamp: int, limit: int) -> int | None:
    """Atomically replace the entry; its size, or None (old copy removed) if over ``limit``."""
    blob = _encode_entry(key, audio)
    shard = os.path.join(root, key[:2])
    final = os.path.join(shard, key + SUFFIX)
    if len(blob) > limit:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(final)
        return None
    os.makedirs(shard, exist_ok=True)
    _inside(final)
    # Unique per write, so two puts of one key never share a temp file.
    temp = os.path.join(shard, f"{key}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
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


def unlink_all(paths: Iterable[str]) -> None:
    """Delete entry files, never through a symlinked shard: eviction must not reach outside
    the cache directory, whatever was planted in it."""
    for path in paths:
        try:
            _inside(path)
        except OSError as exc:
            log.warning("audio cache: not deleting %s: %s", os.path.basename(path), exc)
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def check_writable(root: str) -> None:
    """Create the directory if needed and prove a file can be written in it (OSError if not),
    so an unusable cache directory is found at startup, not on every write."""
    os.makedirs(root, exist_ok=True)
    probe = os.path.join(root, f".probe.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    with open(probe, "xb"):
        pass
    os.unlink(probe)


def _shards(root: str) -> list[str]:
    with os.scandir(root) as entries:
        return [
            e.path for e in entries if _SHARD.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
        ]


def scan(root: str) -> list[tuple[str, int, int]]:
    """(key, size, mtime_ns) of each entry file, deleting temp files of interrupted writes.

    Symlinked shards are skipped: what they point at is not the cache's to index or delete.
    """
    check_writable(root)
    found: list[tuple[str, int, int]] = []
    stray: list[str] = []
    for shard in _shards(root):
        prefix = os.path.basename(shard)
        with os.scandir(shard) as entries:
            for entry in entries:
                if entry.name.endswith(TEMP_SUFFIX):
                    stray.append(entry.path)
                    continue
                key = entry.name.removesuffix(SUFFIX)
                if entry.name.endswith(SUFFIX) and KEY.fullmatch(key) and key[:2] == prefix:
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat(follow_symlinks=False)
                        if entry.is_file(follow_symlinks=False):
                            found.append((key, st.st_size, st.st_mtime_ns))
    if stray:
        log.info("audio cache: removing %d unfinished writes", len(stray))
        unlink_all(stray)
    return found


def wipe(root: str) -> None:
    try:
        shards = _shards(root)
    except FileNotFoundError:
        return
    for shard in shards:
        doomed: list[str] = []
        with contextlib.suppress(FileNotFoundError), os.scandir(shard) as entries:
            doomed = [e.path for e in entries if e.name.endswith((SUFFIX, TEMP_SUFFIX))]
        unlink_all(doomed)
