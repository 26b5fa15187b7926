"""The bot's own cost per request: from the command to the attachment ready, with an API that
answers instantly, so everything measured is the bot (validation, queueing, HTTP on loopback,
decoding, Ogg Opus encoding, caching).

Prints per-request overhead p50/p99 (and for ~20-second clips alone), event-loop lag p99 and
max over the run and while 20 clips are transcoded at once, peak RSS, and cache-hit latency,
and for the Ogg shape the check of one ~20 s Ogg Opus answer alone (as the client checks it),
once for each upstream shape (WAV, MP3 and Ogg Opus by default), each with a fresh fake server
in a process of its own and fresh services.

    python -m bench.overhead [--requests 200] [--concurrency 1] [--shape wav,mp3,ogg]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.fake_process import FakeServerProcess
from bot import audio
from bot.config import load_settings
from bot.services import open_services
from bot.speech.access import Caller
from bot.synthesis.client import SegmindClient
from bot.synthesis.service import SpeechService
from tests.signals import tone

KEY = "bench-key"
CHATTER = (
    "hello everyone welcome back to the server tonight we are playing a few rounds of the new "
    "map and anyone who wants to join is welcome just hop into the voice channel and say hi "
    "remember to be kind to the new members and have fun out there"
)
TARGETS = {"overhead_p99_20s": 0.100, "cache_hit": 0.005, "lag_p99": 0.050, "ogg_check": 0.005}


def texts(count: int, seed: int = 7) -> list[str]:
    """Realistic lengths: mostly short chat lines, some paragraphs up to ~20 s of speech."""
    rng = random.Random(seed)
    vocabulary = CHATTER.split()
    result = []
    for n in range(count):
        chars = rng.choice([20, 40, 60, 90, 120, 180, 250, 330])
        words: list[str] = [f"#{n}"]  # Unique, so every request is a real call.
        while len(" ".join(words)) < chars:
            words.append(rng.choice(vocabulary))
        result.append(" ".join(words)[:chars])
    return result


class LagProbe:
    """Wakes every 10 ms and records how late it was: the event loop's responsiveness."""

    def __init__(self, interval: float = 0.010) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.lags

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, loop.time() - start - self.interval))


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def ServerProcess(shape: str) -> FakeServerProcess:
    """The fake Segmind server in a process of its own, so its work (making audio, as the real
    API does on its side) does not run on the bot's cores, threads or event loop."""
    return FakeServerProcess("--api-key", KEY, "--shape", shape, "--credits", "1e9")


async def run(args: argparse.Namespace, shape: str) -> int:
    async with ServerProcess(shape) as fake:
        with tempfile.TemporaryDirectory() as data:
            settings = load_settings(
                env_file=None,
                segmind_api_key=KEY,
                segmind_base_url=fake.base_url,
                segmind_rpm=10_000,
                user_cooldown=0,
                max_waiting_per_user=50,
                data_dir=Path(data),
            )
            services = await open_services(settings)
            try:
                return await measure(args, shape, services.speech, services.client)
            finally:
                await services.close()


async def one(speech: SpeechService, user: int, text: str) -> tuple[float, float, int]:
    """Seconds from command to attachment bytes ready, the clip's length, and its size."""
    started = time.perf_counter()
    stream = await speech.begin(Caller(user), text)
    clip = await speech.render_many(await stream.collect(), stream.requests[0])
    return time.perf_counter() - started, clip.duration, len(clip.data)


async def measure(
    args: argparse.Namespace, shape: str, speech: SpeechService, client: SegmindClient
) -> int:
    lines = texts(args.requests)
    calls = [0]
    client.add_listener(lambda record: calls.__setitem__(0, calls[0] + 1))
    # Warm-up: the bot's imports and codec set-up, and the fake server's audio for each length
    # (it makes each length once, as slowly as pure Python does): neither is a request's cost.
    lengths = sorted({len(line.strip()) for line in lines})  # The API sees stripped text.
    for length in lengths:
        await one(speech, 0, "w" * length)
    probe = LagProbe()
    probe.start()
    gate = asyncio.Semaphore(args.concurrency)
    results: list[tuple[float, float, int]] = []

    async def member(n: int, text: str) -> None:
        async with gate:
            results.append(await one(speech, n % 50, text))

    await asyncio.gather(*(member(n, text) for n, text in enumerate(lines)))
    run_lags = await probe.stop()
    overheads = [r[0] for r in results]
    long_clips = [r[0] for r in results if r[1] >= 18.0]

    # 20 clips of ~20 s transcoded at once: the loop must stay responsive.
    clips = [
        audio.probe(audio.encode_wav(tone(20.0, freq=200 + n)), audio.AudioFormat.WAV)
        for n in range(20)
    ]
    probe = LagProbe()
    probe.start()
    await asyncio.gather(*(speech.source.normalize(clip) for clip in clips))
    burst_lags = await probe.stop()

    # Cache hits: the same lines again.
    await speech.source.drain()
    hits = []
    for n, text in enumerate(lines[:100]):
        started = time.perf_counter()
        await one(speech, n, text)
        hits.append(time.perf_counter() - started)
    checks = ogg_check_times() if shape == "ogg" else []
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"== upstream shape {shape}")
    print(f"requests: {len(results)} (concurrency {args.concurrency}, server shape {shape})")
    print(f"API calls: {calls[0]} ({len(results)} measured; the 100 repeats made none)")
    print(f"overhead p50: {ms(statistics.median(overheads))}")
    print(f"overhead p99: {ms(pct(overheads, 99))}")
    print(
        f"overhead for ~20 s clips ({len(long_clips)}): p50 {ms(statistics.median(long_clips))}, "
        f"p99 {ms(pct(long_clips, 99))}"
    )
    if args.verbose:
        print("  all ~20 s clips:", ", ".join(ms(x) for x in sorted(long_clips)))
    print(f"event-loop lag p99 over the run: {ms(pct(run_lags, 99))}, max {ms(max(run_lags))}")
    print(
        f"event-loop lag while 20 clips are transcoded: p99 {ms(pct(burst_lags, 99))}, "
        f"max {ms(max(burst_lags))}"
    )
    print(f"peak RSS (this process, all shapes so far): {rss_mib:.0f} MiB")
    print(f"cache hit p50: {ms(statistics.median(hits))}, p99: {ms(pct(hits, 99))}")
    if checks:
        print(
            f"Ogg Opus check per ~20 s clip: p50 {ms(statistics.median(checks))}, "
            f"p99 {ms(pct(checks, 99))} (target <= {ms(TARGETS['ogg_check'])})"
        )
    met = (
        pct(long_clips, 99) < TARGETS["overhead_p99_20s"]
        and pct(hits, 99) < TARGETS["cache_hit"]
        and pct(run_lags + burst_lags, 99) < TARGETS["lag_p99"]
        and calls[0] == len(results) + len(lengths)
        and (not checks or pct(checks, 99) <= TARGETS["ogg_check"])
    )
    print(f"targets met: {'yes' if met else 'no'}")
    return 0 if met else 1


def ogg_check_times(clips: int = 20, rounds: int = 5) -> list[float]:
    """Seconds to check one ~20 s Ogg Opus answer the way the client does (structure, count,
    the first packets decoded; nothing gathered), on the fake server's kind of file."""
    files = [audio.encode_ogg_opus(tone(20.0, freq=200 + n)) for n in range(clips)]
    times = []
    for _ in range(rounds):
        for data in files:
            started = time.perf_counter()
            audio.probe(data, audio.AudioFormat.OGG, keep_samples=not audio.is_ogg_opus(data))
            times.append(time.perf_counter() - started)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--concurrency", type=int, default=1, help="members asking at once (2 cores are shared)"
    )
    parser.add_argument(
        "--shape",
        default="wav,mp3,ogg",
        help="what the fake API answers with; a comma-separated list runs each in turn",
    )
    parser.add_argument("--verbose", action="store_true", help="print every ~20 s clip's time")
    args = parser.parse_args(argv)
    failed = 0
    for shape in [s.strip() for s in args.shape.split(",") if s.strip()]:
        failed |= asyncio.run(run(args, shape))
    return failed


if __name__ == "__main__":
    sys.exit(main())
