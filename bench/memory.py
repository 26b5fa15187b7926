"""Memory under real scale and hostile answers: does what the bot holds match its bounds?

Two measurements, each in a process of its own so the figure is that scenario's alone:

* ``cache``: the bot's services (open_services, the real client and pipeline) against the
  fake Segmind in a separate process, once per upstream shape (WAV, MP3 and Ogg Opus by
  default: a WAV answer is decoded and re-encoded, an Ogg one checked and passed on); unique
  long lines are asked until the memory cache has evicted, i.e. is full at its bound. Prints
  the RSS then against the bound. Target: RSS <= bound + 100 MiB for every shape (issue 11
  saw 1,185 MiB at a 64 MiB bound).
* ``bomb``: a 236 KB eight-channel Ogg Opus file that used to decode to 1.34 GB, probed the
  way the client probes an answer, in a fresh interpreter; once honest about its length and
  once lying (so only the running byte count can stop it). Prints whether it was refused,
  how fast, and the peak RSS (getrusage high-water mark). Target: refused, peak < 300 MiB.

    python -m bench.memory [cache|bomb|all] [--bound-mb 64] [--shape wav,mp3,ogg]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.overhead import KEY, ServerProcess
from bot.config import load_settings
from bot.services import open_services
from bot.speech.access import Caller
from bot.synthesis.cache import AudioCache

CACHE_TARGET_MIB = 100
BOMB_TARGET_MIB = 300


def rss_mib() -> float:
    """Resident memory now (not the peak), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def fill_cache(bound_mb: int, shape: str) -> dict[str, float]:
    async with ServerProcess(shape) as fake:
        with tempfile.TemporaryDirectory() as data:
            settings = load_settings(
                env_file=None,
                segmind_api_key=KEY,
                segmind_base_url=fake.base_url,
                segmind_rpm=10_000,
                user_cooldown=0,
                max_waiting_per_user=50,
                chunk_chars=2000,
                cache_memory_mb=bound_mb,
                cache_disk_mb=0,
                data_dir=Path(data),
            )
            services = await open_services(settings)
            try:
                speech, cache = services.speech, services.cache
                assert isinstance(cache, AudioCache)
                words = "the quick brown fox jumps over the lazy dog and keeps running " * 40
                before = rss_mib()
                n = 0
                # Each line is about 114 s of speech (the fake's 0.06 s a character).
                while cache.stats.evictions < 10:
                    stream = await speech.begin(Caller(n % 40), f"#{n} {words}"[:1900])
                    await stream.collect()
                    await speech.source.drain()
                    n += 1
                gc.collect()
                stats = cache.stats
                return {
                    "requests": n,
                    "before": before,
                    "rss": rss_mib(),
                    "held": stats.memory_bytes / 2**20,
                    "items": stats.memory_items,
                    "bound": bound_mb,
                }
            finally:
                await services.close()


def child_cache(bound_mb: int, shape: str) -> None:
    print(json.dumps(asyncio.run(fill_cache(bound_mb, shape))))


def child_bomb(path: str) -> None:
    from bot import audio
    from bot.errors import AudioError

    data = Path(path).read_bytes()
    baseline = peak_mib()
    started = time.perf_counter()
    try:
        audio.probe(data, audio.AudioFormat.OGG)
        outcome = "decoded (NOT refused)"
    except AudioError as exc:
        outcome = f"refused: {exc}"
    elapsed = time.perf_counter() - started
    result = {"outcome": outcome, "seconds": elapsed, "baseline": baseline, "peak": peak_mib()}
    print(json.dumps(result))


def run_child(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", *args], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def bench_cache(bound_mb: int, shape: str) -> bool:
    r = run_child("--child-cache", str(bound_mb), "--shape", shape)
    rss, bound = float(str(r["rss"])), float(str(r["bound"]))
    print(
        f"cache ({shape.upper()} upstream): {r['requests']} requests, {r['items']} clips held, "
        f"{float(str(r['held'])):.1f} MiB charged of a {bound:.0f} MiB bound"
    )
    print(f"  RSS before filling: {float(str(r['before'])):.0f} MiB")
    print(f"  RSS with the cache full: {rss:.0f} MiB (bound + {rss - bound:.0f} MiB)")
    met = rss <= bound + CACHE_TARGET_MIB
    print(f"  target RSS <= bound + {CACHE_TARGET_MIB} MiB: {'met' if met else 'MISSED'}")
    return met


def bench_bomb() -> bool:
    from tests.hostile import opus_bomb

    met = True
    with tempfile.TemporaryDirectory() as tmp:
        for label, claim in (("honest length", None), ("lying length", 1.0)):
            path = Path(tmp) / "bomb.ogg"
            data = opus_bomb(1745.0, channels=8, claim_seconds=claim)
            path.write_bytes(data)
            r = run_child("--child-bomb", str(path))
            peak = float(str(r["peak"]))
            print(f"bomb ({label}, {len(data) / 1000:.0f} KB, 8 channels, 1,745 s): {r['outcome']}")
            print(
                f"  in {float(str(r['seconds'])) * 1000:.0f} ms; peak RSS {peak:.0f} MiB "
                f"(interpreter and imports alone: {float(str(r['baseline'])):.0f} MiB)"
            )
            ok = str(r["outcome"]).startswith("refused") and peak < BOMB_TARGET_MIB
            verdict = "met" if ok else "MISSED"
            print(f"  target refused with peak RSS < {BOMB_TARGET_MIB} MiB: {verdict}")
            met = met and ok
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("what", nargs="?", choices=["cache", "bomb", "all"], default="all")
    parser.add_argument("--bound-mb", type=int, default=64, help="CACHE_MEMORY_MB to fill")
    parser.add_argument(
        "--shape",
        default="wav,mp3,ogg",
        help="what the fake API answers with for `cache`; a comma-separated list runs each",
    )
    parser.add_argument("--child-cache", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-bomb", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_cache is not None:
        child_cache(args.child_cache, args.shape)
        return 0
    if args.child_bomb is not None:
        child_bomb(args.child_bomb)
        return 0
    met = True
    if args.what in ("bomb", "all"):
        met = bench_bomb() and met
    if args.what in ("cache", "all"):
        for shape in [s.strip() for s in args.shape.split(",") if s.strip()]:
            met = bench_cache(args.bound_mb, shape) and met
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
