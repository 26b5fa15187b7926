"""Latency of AudioCache hits, from lookup to bytes ready: the target is under 5 ms on disk.

A hit replaces an 18 s, paid Segmind call, so it must feel instant. Clips are real Ogg Opus
speech-length tone; disk hits run with a zero memory bound so every lookup reads a file.

    python -m bench.cache_hit [--lookups 1000] [--seconds 20] [--keys 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bot import audio
from bot.audio import Audio, AudioFormat
from bot.speech.request import SpeechRequest
from bot.synthesis.cache import AudioCache, cache_key
from tests.signals import tone

TARGET_MS = 5.0


def percentile(samples: Sequence[float], q: int) -> float:
    """The q-th percentile, 1 <= q <= 99."""
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


async def timed(
    lookup: Callable[[str], Awaitable[Audio | None]], keys: list[str], n: int
) -> list[float]:
    """Milliseconds per lookup; a miss would be a broken benchmark, so it raises."""
    for key in keys:  # warm the executor's threads and the page cache
        await lookup(key)
    times: list[float] = []
    for i in range(n):
        start = time.perf_counter_ns()
        got = await lookup(keys[i % len(keys)])
        times.append((time.perf_counter_ns() - start) / 1e6)
        if got is None or not got.data:
            raise RuntimeError("a lookup missed")
    return times


async def run(lookups: int, seconds: float, key_count: int) -> bool:
    clip = audio.probe(audio.encode_ogg_opus(tone(seconds)), AudioFormat.OGG)
    keys = [cache_key(SpeechRequest(f"line {n}"), model="bench") for n in range(key_count)]
    print(f"clip: {clip.duration:.1f} s, {len(clip.data):,} bytes of Ogg Opus")
    print(f"lookups: {lookups} over {key_count} keys")

    memory = AudioCache()
    for key in keys:
        await memory.put(key, clip)

    async def memory_sync(key: str) -> Audio | None:
        return memory.get_memory(key)

    with tempfile.TemporaryDirectory() as root:
        disk = AudioCache(memory_bytes=0, disk_dir=Path(root))
        await disk.open()
        for key in keys:
            await disk.put(key, clip)
        results = {
            "get_memory": await timed(memory_sync, keys, lookups),
            "memory get": await timed(memory.get, keys, lookups),
            "disk get": await timed(disk.get, keys, lookups),
        }
    for name, times in results.items():
        print(f"{name} p50: {percentile(times, 50):.4f} ms")
        print(f"{name} p99: {percentile(times, 99):.4f} ms")
    disk_p99 = percentile(results["disk get"], 99)
    met = disk_p99 < TARGET_MS
    print(f"target disk p99 < {TARGET_MS:g} ms: {'met' if met else 'MISSED'}")
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--keys", type=int, default=20)
    args = parser.parse_args(argv)
    return 0 if asyncio.run(run(args.lookups, args.seconds, args.keys)) else 1


if __name__ == "__main__":
    sys.exit(main())
