"""Tests for bot.cache with real files in tmp_path and real Ogg Opus clips: no mocks."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import json
import random
import shutil
import struct
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import ParamSpec, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import audio
from bot.audio import Audio, AudioFormat
from bot.speech.request import SpeechRequest
from bot.synthesis.cache import (
    CACHE_FORMAT_VERSION,
    ENTRY_OVERHEAD,
    AudioCache,
    CacheStats,
    cache_key,
)
from tests.signals import tone

MODEL = "gemini-2.5-flash-tts"
P = ParamSpec("P")
T = TypeVar("T")
HEADER = struct.Struct("<4sHI")  # the documented file layout: magic, version, JSON length


@cache
def clip(seconds: float = 0.3, freq: float = 220.0) -> Audio:
    pcm = tone(seconds, freq=freq)
    return audio.probe(audio.encode_ogg_opus(pcm), AudioFormat.OGG)


def key(n: int) -> str:
    return cache_key(SpeechRequest(f"line {n}"), model=MODEL)


def fake(size: int, fill: int = 0) -> Audio:
    """Bytes of an exact size, for bound arithmetic (the cache does not decode audio)."""
    return Audio(bytes([fill % 256]) * size, AudioFormat.OGG, 48_000, 1, size / 8000)


def entry_files(root: Path) -> dict[str, Path]:
    return {path.name.removesuffix(".tts"): path for path in root.rglob("*.tts")}


def listing(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def path_of(root: Path, k: str) -> Path:
    return entry_files(root)[k]


def assert_disk_consistent(cache_: AudioCache, root: Path) -> None:
    files = entry_files(root)
    stats = cache_.stats
    assert stats.disk_items == len(files)
    assert stats.disk_bytes == sum(path.stat().st_size for path in files.values())
    assert not list(root.rglob("*.tmp"))


# --- keys -----------------------------------------------------------------------------------------

BASE = SpeechRequest("Hello there", voice="Zephyr", voice_2=None, temperature=0.4)


def test_equal_requests_give_equal_keys() -> None:
    again = SpeechRequest("Hello there", voice="Zephyr", voice_2=None, temperature=0.40)
    assert cache_key(BASE, model=MODEL) == cache_key(again, model=MODEL)
    assert len(cache_key(BASE, model=MODEL)) == 64


@pytest.mark.parametrize(
    "other",
    [
        dataclasses.replace(BASE, text="Hello there."),
        dataclasses.replace(BASE, text="hello there"),
        dataclasses.replace(BASE, voice="Puck"),
        dataclasses.replace(BASE, voice_2="Puck"),
        dataclasses.replace(BASE, voice_2=""),
        dataclasses.replace(BASE, temperature=0.41),
        dataclasses.replace(BASE, temperature=0.0),
    ],
)
def test_every_field_is_in_the_key(other: SpeechRequest) -> None:
    assert cache_key(other, model=MODEL) != cache_key(BASE, model=MODEL)


def test_model_is_in_the_key() -> None:
    assert cache_key(BASE, model=MODEL) != cache_key(BASE, model="gemini-2.5-pro-tts")


def test_temperature_compares_as_a_float() -> None:
    one = cache_key(dataclasses.replace(BASE, temperature=1), model=MODEL)
    assert one == cache_key(dataclasses.replace(BASE, temperature=1.0), model=MODEL)
    zero = cache_key(dataclasses.replace(BASE, temperature=0.0), model=MODEL)
    assert zero == cache_key(dataclasses.replace(BASE, temperature=-0.0), model=MODEL)


def test_fields_cannot_bleed_into_each_other() -> None:
    a = SpeechRequest('a","voice":"b', voice="c")
    b = SpeechRequest("a", voice='b","text":"c')
    c = SpeechRequest("a|b", voice="c")
    d = SpeechRequest("a", voice="b|c")
    assert len({cache_key(r, model=MODEL) for r in (a, b, c, d)}) == 4
    assert cache_key(SpeechRequest("x", voice="y"), model="m|x") != cache_key(
        SpeechRequest("m|x", voice="y"), model="m"
    )


def test_key_depends_only_on_the_request_fields_and_model() -> None:
    # The member who asked is not in the key: the same line is shared by everyone. A new
    # SpeechRequest field that shapes the audio must be added to cache_key (and this test).
    assert [f.name for f in dataclasses.fields(SpeechRequest)] == [
        "text",
        "voice",
        "voice_2",
        "temperature",
    ]
    assert list(inspect.signature(cache_key).parameters) == ["request", "model"]


def test_key_encoding_is_pinned() -> None:
    # Changing the encoding orphans every stored entry: bump CACHE_FORMAT_VERSION with it.
    assert CACHE_FORMAT_VERSION == 1
    assert cache_key(BASE, model=MODEL) == (
        "3da87d74888f1083e69e19ea0f21a6a4d5d015ee81089af64af4afb835ec9508"
    )


# --- round trips ----------------------------------------------------------------------------------


async def test_put_then_get_from_memory() -> None:
    cache_ = AudioCache()
    k, value = key(1), clip()
    assert await cache_.get(k) is None
    await cache_.put(k, value)
    got = await cache_.get(k)
    assert got == value
    assert cache_.get_memory(k) == value
    stats = cache_.stats
    assert (stats.memory_hits, stats.disk_hits, stats.misses) == (2, 0, 1)
    assert stats.memory_items == 1
    assert stats.memory_bytes == len(value.data) + ENTRY_OVERHEAD
    assert (stats.disk_items, stats.disk_bytes) == (0, 0)


async def test_restart_reads_from_disk_then_promotes(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    first = AudioCache(disk_dir=root)
    await first.open()
    k, value = key(1), clip()
    await first.put(k, value)
    assert_disk_consistent(first, root)
    assert first.stats.disk_items == 1

    second = AudioCache(disk_dir=root)
    await second.open()
    assert second.stats.disk_items == 1
    assert second.get_memory(k) is None
    got = await second.get(k)
    assert got == value
    assert got is not None
    assert (got.format, got.sample_rate, got.channels) == (AudioFormat.OGG, 48_000, 1)
    assert audio.probe(got.data, AudioFormat.OGG) == value
    assert second.get_memory(k) == value  # promoted
    stats = second.stats
    assert (stats.memory_hits, stats.disk_hits, stats.misses) == (1, 1, 0)


async def test_get_and_put_open_the_cache_themselves(tmp_path: Path) -> None:
    await AudioCache(disk_dir=tmp_path).put(key(1), clip())
    assert await AudioCache(disk_dir=tmp_path).get(key(1)) == clip()


async def test_put_rejects_what_is_not_a_key(tmp_path: Path) -> None:
    cache_ = AudioCache(disk_dir=tmp_path)
    for bad in ("../../etc/passwd", key(1).upper(), key(1)[:-1], ""):
        with pytest.raises(ValueError, match="not a cache key"):
            await cache_.put(bad, clip())
    assert cache_.stats == CacheStats(0, 0, 0, 0, 0, 0, 0, 0, 0)


async def test_memory_only_cache_touches_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cache_ = AudioCache(memory_bytes=1 << 20)
    await cache_.put(key(1), clip())
    assert await cache_.get(key(1)) == clip()
    assert await cache_.get(key(2)) is None
    assert listing(tmp_path) == []


# --- bounds and LRU order -------------------------------------------------------------------------

OPS = st.lists(
    st.tuples(st.sampled_from(["put", "get"]), st.integers(0, 5), st.integers(0, 3000)),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, bound=st.integers(0, 8000))
def test_memory_bound_and_lru_order_match_a_model(
    ops: list[tuple[str, int, int]], bound: int
) -> None:
    async def run() -> None:
        cache_ = AudioCache(memory_bytes=bound)
        model: OrderedDict[str, int] = OrderedDict()
        for op, n, size in ops:
            k = key(n)
            if op == "put":
                await cache_.put(k, fake(size, n))
                model.pop(k, None)
                if size + ENTRY_OVERHEAD <= bound:
                    model[k] = size + ENTRY_OVERHEAD
                while sum(model.values()) > bound:
                    model.popitem(last=False)
            else:
                got = await cache_.get(k)
                assert (got is not None) == (k in model)
                if k in model:
                    model.move_to_end(k)
            stats = cache_.stats
            assert stats.memory_bytes <= bound
            assert stats.memory_bytes == sum(model.values())
            assert stats.memory_items == len(model)
        for n in range(6):
            assert (cache_.get_memory(key(n)) is not None) == (key(n) in model)

    asyncio.run(run())


async def test_recently_read_entry_survives_memory_eviction() -> None:
    size = len(clip().data) + ENTRY_OVERHEAD
    cache_ = AudioCache(memory_bytes=3 * size)
    for n in range(3):
        await cache_.put(key(n), clip())
    assert await cache_.get(key(0)) is not None  # now the most recent
    await cache_.put(key(3), clip())
    assert cache_.get_memory(key(1)) is None  # the least recent went
    assert all(cache_.get_memory(key(n)) is not None for n in (0, 2, 3))
    assert cache_.stats.evictions == 1


async def test_item_bigger_than_memory_is_kept_only_on_disk(tmp_path: Path) -> None:
    cache_ = AudioCache(memory_bytes=len(clip().data), disk_dir=tmp_path)
    await cache_.put(key(0), fake(10))
    await cache_.put(key(1), clip())
    assert cache_.get_memory(key(1)) is None
    assert cache_.get_memory(key(0)) is not None  # not evicted for an item that cannot fit
    assert cache_.stats.memory_bytes == 10 + ENTRY_OVERHEAD
    assert await cache_.get(key(1)) == clip()
    assert cache_.stats.disk_hits == 1


async def test_item_bigger_than_disk_is_not_written_and_drops_the_old_copy(
    tmp_path: Path,
) -> None:
    cache_ = AudioCache(disk_dir=tmp_path, disk_bytes=2000)
    await cache_.put(key(1), fake(100, 1))
    await cache_.put(key(0), fake(100, 1))
    assert set(entry_files(tmp_path)) == {key(0), key(1)}
    await cache_.put(key(0), fake(5000, 2))
    assert set(entry_files(tmp_path)) == {key(1)}  # the others are not flushed to make room
    assert_disk_consistent(cache_, tmp_path)
    assert cache_.get_memory(key(0)) == fake(5000, 2)


@settings(max_examples=25, deadline=None)
@given(ops=OPS, bound=st.integers(0, 12_000))
def test_disk_bound_holds_after_any_sequence(ops: list[tuple[str, int, int]], bound: int) -> None:
    async def run(root: Path) -> None:
        cache_ = AudioCache(memory_bytes=0, disk_dir=root, disk_bytes=bound)
        for op, n, size in ops:
            if op == "put":
                await cache_.put(key(n), fake(size, n))
            else:
                got = await cache_.get(key(n))
                assert got is None or got == fake(len(got.data), n)
            assert cache_.stats.disk_bytes <= bound
            assert_disk_consistent(cache_, root)
        reopened = AudioCache(memory_bytes=0, disk_dir=root, disk_bytes=bound)
        await reopened.open()
        assert reopened.stats.disk_items == cache_.stats.disk_items
        assert reopened.stats.disk_bytes == cache_.stats.disk_bytes
        assert reopened.stats.corrupt == 0

    with tempfile.TemporaryDirectory() as root:
        asyncio.run(run(Path(root)))


async def test_recently_read_file_survives_disk_eviction(tmp_path: Path) -> None:
    cache_ = AudioCache(memory_bytes=0, disk_dir=tmp_path, disk_bytes=3 * 600)
    for n in range(3):
        await cache_.put(key(n), fake(300, n))
    assert await cache_.get(key(0)) == fake(300, 0)
    await cache_.put(key(3), fake(300, 3))
    assert set(entry_files(tmp_path)) == {key(0), key(2), key(3)}
    assert cache_.stats.evictions == 1
    assert_disk_consistent(cache_, tmp_path)


async def test_restart_keeps_the_order_of_writes_made_within_one_clock_tick(
    tmp_path: Path,
) -> None:
    # File mtimes come from a coarse kernel clock; without explicit stamps these would tie.
    cache_ = AudioCache(memory_bytes=0, disk_dir=tmp_path)
    order = [key(n) for n in range(12)]
    for n, k in enumerate(order):
        await cache_.put(k, fake(300, n))
    size = cache_.stats.disk_bytes // len(order)
    reopened = AudioCache(memory_bytes=0, disk_dir=tmp_path, disk_bytes=4 * size)
    await reopened.open()
    assert set(entry_files(tmp_path)) == set(order[-4:])


async def test_disk_lru_order_survives_restart_with_a_smaller_bound(tmp_path: Path) -> None:
    cache_ = AudioCache(memory_bytes=0, disk_dir=tmp_path)
    for n in range(5):
        await cache_.put(key(n), clip(0.3, 200 + n))
    assert await cache_.get(key(0)) == clip(0.3, 200)  # touched: now the most recent
    sizes = {k: p.stat().st_size for k, p in entry_files(tmp_path).items()}
    keep = [key(n) for n in (3, 4, 0)]
    bound = sum(sizes[k] for k in keep)

    smaller = AudioCache(memory_bytes=0, disk_dir=tmp_path, disk_bytes=bound)
    await smaller.open()
    assert set(entry_files(tmp_path)) == set(keep)
    assert smaller.stats.disk_bytes <= bound
    assert smaller.stats.evictions == 2
    assert_disk_consistent(smaller, tmp_path)
    assert await smaller.get(key(0)) == clip(0.3, 200)
    assert await smaller.get(key(1)) is None

    await smaller.put(key(5), clip(0.3, 205))
    survivors = set(entry_files(tmp_path))
    order = [key(n) for n in (3, 4, 0, 5)]  # least recent first: 0 was just read
    assert key(3) not in survivors
    assert survivors == set(order[len(order) - len(survivors) :])
    assert smaller.stats.disk_bytes <= bound


# --- damage ---------------------------------------------------------------------------------------


def _meta_span(blob: bytes) -> tuple[int, int]:
    _, _, size = HEADER.unpack_from(blob)
    return HEADER.size, HEADER.size + size


def _edit_meta(blob: bytes, **changes: object) -> bytes:
    start, end = _meta_span(blob)
    meta = json.loads(blob[start:end])
    meta.update(changes)
    return _with_meta(blob, json.dumps(meta).encode())


def _with_meta(blob: bytes, raw: bytes) -> bytes:
    """The entry with its header JSON replaced by ``raw`` (the length field kept right)."""
    end = _meta_span(blob)[1]
    return HEADER.pack(b"TTSC", CACHE_FORMAT_VERSION, len(raw)) + raw + blob[end:]


def _without(name: str) -> Callable[[bytes], bytes]:
    def edit(blob: bytes) -> bytes:
        start, end = _meta_span(blob)
        meta = json.loads(blob[start:end])
        del meta[name]
        return _with_meta(blob, json.dumps(meta).encode())

    return edit


def _flip(offset: int) -> Callable[[bytes], bytes]:
    def edit(blob: bytes) -> bytes:
        i = offset if offset >= 0 else len(blob) + offset
        return blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 :]

    return edit


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "last data byte flipped": _flip(-1),
    "data byte flipped": lambda blob: _flip(_meta_span(blob)[1] + 100)(blob),
    "bad magic": lambda blob: b"RIFF" + blob[4:],
    "other version": lambda blob: (
        HEADER.pack(b"TTSC", 99, _meta_span(blob)[1] - HEADER.size) + blob[HEADER.size :]
    ),
    "huge header length": lambda blob: (
        HEADER.pack(b"TTSC", CACHE_FORMAT_VERSION, 2**31) + blob[HEADER.size :]
    ),
    "garbage JSON": lambda blob: _with_meta(blob, b"\xff\xfe{not json"),
    "JSON nested past the recursion limit": lambda blob: _with_meta(blob, b"[" * 4000),
    "JSON not an object": lambda blob: _with_meta(blob, b"[]"),
    "wrong length": lambda blob: _edit_meta(blob, length=len(blob) - _meta_span(blob)[1] + 1),
    "wrong key": lambda blob: _edit_meta(blob, key=key(99)),
    "wrong digest": lambda blob: _edit_meta(blob, blake2b="00" * 32),
    "missing digest": _without("blake2b"),
    "missing duration": _without("duration"),
    "null channels": lambda blob: _edit_meta(blob, channels=None),
    "string rate": lambda blob: _edit_meta(blob, sample_rate="48000"),
    "bool channels": lambda blob: _edit_meta(blob, channels=True),
    "unknown format": lambda blob: _edit_meta(blob, format="flac"),
    "negative duration": lambda blob: _edit_meta(blob, duration=-1.0),
    "trailing bytes": lambda blob: blob + b"\0",
    "empty": lambda blob: b"",
}
for cut in (3, 9, 10, 40):
    CORRUPTIONS[f"cut at {cut}"] = functools.partial(lambda n, blob: blob[:n], cut)
CORRUPTIONS["cut in the header JSON"] = lambda blob: blob[: _meta_span(blob)[1] - 1]
CORRUPTIONS["cut at the data"] = lambda blob: blob[: _meta_span(blob)[1]]
CORRUPTIONS["cut mid-data"] = lambda blob: blob[: (_meta_span(blob)[1] + len(blob)) // 2]
CORRUPTIONS["cut one byte short"] = lambda blob: blob[:-1]


@pytest.mark.parametrize("damage", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
async def test_damaged_entry_is_a_counted_miss_and_deleted(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    await AudioCache(disk_dir=tmp_path).put(key(1), clip())
    path = path_of(tmp_path, key(1))
    blob = path.read_bytes()
    damaged = damage(blob)
    assert damaged != blob
    path.write_bytes(damaged)

    cache_ = AudioCache(disk_dir=tmp_path)
    await cache_.open()
    assert await cache_.get(key(1)) is None
    assert not path.exists()
    stats = cache_.stats
    assert (stats.corrupt, stats.misses, stats.disk_hits) == (1, 1, 0)
    assert (stats.disk_items, stats.disk_bytes, stats.memory_items) == (0, 0, 0)
    assert await cache_.get(key(1)) is None
    assert cache_.stats.corrupt == 1


async def test_an_undamaged_rewrite_of_a_file_still_reads(tmp_path: Path) -> None:
    # Guards the corruption table: the editing helpers alone must not break a file.
    await AudioCache(disk_dir=tmp_path).put(key(1), clip())
    path = path_of(tmp_path, key(1))
    path.write_bytes(_edit_meta(path.read_bytes()))
    assert await AudioCache(disk_dir=tmp_path).get(key(1)) == clip()


async def test_stray_temp_files_are_removed_at_open(tmp_path: Path) -> None:
    await AudioCache(disk_dir=tmp_path).put(key(1), clip())
    shard = path_of(tmp_path, key(1)).parent
    stray = shard / f"{key(1)}.{'ab' * 16}.tmp"
    stray.write_bytes(b"half a write")
    unrelated = tmp_path / "README"
    unrelated.write_text("not ours")

    cache_ = AudioCache(disk_dir=tmp_path)
    await cache_.open()
    assert not stray.exists()
    assert unrelated.exists()
    assert cache_.stats.disk_items == 1
    assert_disk_consistent(cache_, tmp_path)


async def test_entry_deleted_underneath_is_a_plain_miss(tmp_path: Path) -> None:
    await AudioCache(disk_dir=tmp_path).put(key(1), clip())
    await AudioCache(disk_dir=tmp_path).put(key(2), clip())
    cache_ = AudioCache(disk_dir=tmp_path)
    await cache_.open()
    path_of(tmp_path, key(1)).unlink()
    assert await cache_.get(key(1)) is None
    assert (cache_.stats.corrupt, cache_.stats.misses, cache_.stats.disk_items) == (0, 1, 1)

    shutil.rmtree(tmp_path)  # the whole directory, shards and all
    assert await cache_.get(key(2)) is None
    assert cache_.stats.disk_items == 0
    await cache_.put(key(3), clip())  # recreates what it needs
    assert await AudioCache(disk_dir=tmp_path).get(key(3)) == clip()


# --- concurrency ----------------------------------------------------------------------------------


async def test_concurrent_puts_and_gets_leave_a_consistent_cache(tmp_path: Path) -> None:
    clips = [clip(0.2, f) for f in (180, 240, 300)]
    size = len(clips[0].data)
    rng = random.Random(7)
    with ThreadPoolExecutor(8) as pool:
        cache_ = AudioCache(
            memory_bytes=2 * size, disk_dir=tmp_path, disk_bytes=3 * size + 600, executor=pool
        )

        async def get(k: str) -> None:
            got = await cache_.get(k)
            assert got is None or got in clips

        calls = [
            cache_.put(key(n), rng.choice(clips)) if rng.random() < 0.5 else get(key(n))
            for n in (rng.randrange(5) for _ in range(50))
        ]
        await asyncio.gather(*calls)
        assert cache_.stats.memory_bytes <= 2 * size
        assert cache_.stats.disk_bytes <= 3 * size + 600
        assert cache_.stats.corrupt == 0
        assert_disk_consistent(cache_, tmp_path)

    fresh = AudioCache(disk_dir=tmp_path)
    for k in entry_files(tmp_path):
        assert await fresh.get(k) in clips
    assert fresh.stats.corrupt == 0


async def test_last_of_concurrent_puts_wins(tmp_path: Path) -> None:
    clips = [clip(0.2, 150 + 10 * n) for n in range(20)]
    with ThreadPoolExecutor(8) as pool:
        cache_ = AudioCache(disk_dir=tmp_path, executor=pool)
        await asyncio.gather(*(cache_.put(key(1), c) for c in clips))
        assert cache_.get_memory(key(1)) == clips[-1]
        assert_disk_consistent(cache_, tmp_path)
    assert await AudioCache(disk_dir=tmp_path).get(key(1)) == clips[-1]


class GatedExecutor(ThreadPoolExecutor):
    """Runs the named cache functions at once but holds their outcome until their gate is
    set, to stage races deterministically."""

    def __init__(self, *names: str) -> None:
        super().__init__(4)
        self.done = {name: threading.Event() for name in names}
        self.gate = {name: threading.Event() for name in names}

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        name = getattr(fn, "func", fn).__name__
        if name not in self.gate:
            return super().submit(fn, *args, **kwargs)

        def held() -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                self.done[name].set()
                self.gate[name].wait(10)

        return super().submit(held)

    async def wait_done(self, name: str) -> None:
        assert await asyncio.to_thread(self.done[name].wait, 10)


@pytest.mark.parametrize("damage", ["deleted", "corrupt"])
async def test_a_failed_read_does_not_drop_the_entry_written_meanwhile(
    tmp_path: Path, damage: str
) -> None:
    await AudioCache(disk_dir=tmp_path).put(key(1), clip(0.2, 200))
    path = path_of(tmp_path, key(1))
    with GatedExecutor("read_entry") as pool:
        cache_ = AudioCache(memory_bytes=0, disk_dir=tmp_path, executor=pool)
        await cache_.open()
        if damage == "deleted":
            path.unlink()
        else:
            path.write_bytes(b"TTSC junk")
        reading = asyncio.create_task(cache_.get(key(1)))
        await pool.wait_done("read_entry")
        await cache_.put(key(1), clip(0.2, 300))  # lands while the failed read is pending
        pool.gate["read_entry"].set()
        assert await reading is None
        assert cache_.stats.corrupt == (damage == "corrupt")
        assert cache_.stats.disk_items == 1
        assert_disk_consistent(cache_, tmp_path)
    assert await AudioCache(disk_dir=tmp_path).get(key(1)) == clip(0.2, 300)


async def test_dropping_a_damaged_file_waits_for_a_write_in_progress(tmp_path: Path) -> None:
    await AudioCache(disk_dir=tmp_path).put(key(1), clip(0.2, 200))
    path = path_of(tmp_path, key(1))
    with GatedExecutor("read_entry", "write_entry") as pool:
        cache_ = AudioCache(memory_bytes=0, disk_dir=tmp_path, executor=pool)
        await cache_.open()
        path.write_bytes(b"TTSC junk")
        reading = asyncio.create_task(cache_.get(key(1)))
        await pool.wait_done("read_entry")  # it read the damaged file
        writing = asyncio.create_task(cache_.put(key(1), clip(0.2, 300)))
        await pool.wait_done("write_entry")  # the good file is in place, not yet indexed
        pool.gate["read_entry"].set()
        done, _ = await asyncio.wait([reading], timeout=0.1)
        assert not done  # waiting for the write, not deleting its file
        pool.gate["write_entry"].set()
        await writing
        assert await reading is None
        assert cache_.stats.corrupt == 1
        assert_disk_consistent(cache_, tmp_path)
    assert await AudioCache(disk_dir=tmp_path).get(key(1)) == clip(0.2, 300)


async def test_a_cancelled_put_still_finishes_and_indexes_its_write(tmp_path: Path) -> None:
    with GatedExecutor("write_entry") as pool:
        cache_ = AudioCache(disk_dir=tmp_path, executor=pool)
        await cache_.open()
        putting = asyncio.create_task(cache_.put(key(1), clip()))
        await pool.wait_done("write_entry")
        putting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await putting
        pool.gate["write_entry"].set()
        await cache_.put(key(2), clip(0.2, 300))  # queues behind the first write
        assert cache_.stats.disk_items == 2
        assert_disk_consistent(cache_, tmp_path)


async def test_an_unusable_directory_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    cache_ = AudioCache(disk_dir=blocker / "cache")
    await cache_.put(key(1), clip())  # the clip is still kept in memory
    assert cache_.get_memory(key(1)) == clip()
    assert await cache_.get(key(2)) is None
    assert "cannot open" in caplog.text
    with pytest.raises(NotADirectoryError):
        await cache_.open()  # called at startup, it tells the owner


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(4)
        self.calls: list[str] = []

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        self.calls.append(getattr(fn, "func", fn).__name__)
        return super().submit(fn, *args, **kwargs)


async def test_superseded_writes_are_skipped(tmp_path: Path) -> None:
    clips = [clip(0.2, 150 + 10 * n) for n in range(20)]
    with CountingExecutor() as pool:
        cache_ = AudioCache(disk_dir=tmp_path, executor=pool)
        await cache_.open()
        await asyncio.gather(*(cache_.put(key(1), c) for c in clips))
    # Each would replace the one before: only the newest is worth writing.
    assert 1 <= pool.calls.count("write_entry") <= 2
    assert await AudioCache(disk_dir=tmp_path).get(key(1)) == clips[-1]


async def test_get_during_rewrites_sees_a_whole_entry(tmp_path: Path) -> None:
    clips = [clip(0.2, 150 + 10 * n) for n in range(6)]
    seen: list[Audio | None] = []
    writing = 2
    with ThreadPoolExecutor(8) as pool:
        cache_ = AudioCache(memory_bytes=0, disk_dir=tmp_path, executor=pool)
        await cache_.put(key(1), clips[0])

        async def reader() -> None:
            while writing:
                seen.append(await cache_.get(key(1)))

        async def writer() -> None:
            nonlocal writing
            for c in clips:
                await cache_.put(key(1), c)
            writing -= 1

        await asyncio.gather(reader(), reader(), writer(), writer())
        assert await cache_.get(key(1)) == clips[-1]
    assert seen
    assert all(got in clips for got in seen)  # each read saw one whole version
    assert cache_.stats.corrupt == 0


async def test_clear_removes_everything_and_wins_over_a_read_in_flight(tmp_path: Path) -> None:
    for n in range(3):
        await AudioCache(disk_dir=tmp_path).put(key(n), clip())
    cache_ = AudioCache(disk_dir=tmp_path)
    await cache_.open()
    await cache_.put(key(3), clip())
    got, _ = await asyncio.gather(cache_.get(key(0)), cache_.clear())
    assert got in (None, clip())
    assert cache_.get_memory(key(0)) is None  # the read did not bring it back
    stats = cache_.stats
    assert stats.memory_items == stats.memory_bytes == stats.disk_items == stats.disk_bytes == 0
    assert entry_files(tmp_path) == {}
    assert await AudioCache(disk_dir=tmp_path).get(key(3)) is None
