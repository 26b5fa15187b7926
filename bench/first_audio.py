"""What a listener hears of a long text in voice: the wait for the first words, the silent gaps
between parts while the rest is still being made, and what it cost in calls.

The real synthesis latency is unknown (Segmind adds queueing to generation time that grows
with the audio), so four latency models are measured, each with the fake Segmind server in a
process of its own: linear (0.3 s + 2 ms per character), 2 s + 11 ms per character, 15 s +
2 ms per character, and a flat 18 s. For each, the text is spoken once as a single request and
once chunked (a short first part, then full parts), through the bot's own services and
pipeline. Playback is simulated the way the player pulls clips: the next part is asked for
when the current one has finished playing. All times (server latency and playback) are scaled
by `--scale` so a run takes minutes, not a quarter of an hour, and printed back in real
seconds; the bot's own work is not scaled, so its figures are inflated by 1 / scale (the
overhead bench measures that work on its own).

    python -m bench.first_audio [--chars 1500] [--scale 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.fake_process import FakeServerProcess
from bot.config import load_settings
from bot.services import open_services
from bot.speech.access import Caller
from bot.synthesis.service import Destination

KEY = "bench-key"
SENTENCES = (
    "The committee met on Tuesday to review the proposal in detail.",
    "Several members raised concerns about the timeline and the budget.",
    "After a long discussion, they agreed to revisit the question next month.",
    "In the meantime, the working group will gather more data from the field.",
    "Everyone thanked the chair for keeping the meeting short and focused.",
)
#: (name, seconds before any answer, seconds per character of text)
MODELS = (
    ("linear 0.3 s + 2 ms/char", 0.3, 0.002),
    ("2 s + 11 ms/char", 2.0, 0.011),
    ("15 s + 2 ms/char", 15.0, 0.002),
    ("flat 18 s", 18.0, 0.0),
)
#: Chunking must bring the first words at least this much sooner where latency grows with text.
TARGET_RATIO = 1 / 3


@dataclass(frozen=True, slots=True)
class Heard:
    first: float
    gaps: list[float]
    whole: float
    calls: int

    @property
    def silent(self) -> float:
        return sum(self.gaps)


def long_text(chars: int) -> str:
    words: list[str] = []
    n = 0
    while len(" ".join(words)) < chars:
        words.append(SENTENCES[n % len(SENTENCES)])
        n += 1
    return " ".join(words)[:chars].rsplit(" ", 1)[0] + "."


async def listen(
    base_url: str,
    text: str,
    *,
    chunk_chars: int,
    first_chunk_chars: int,
    scale: float,
    play: bool = True,
) -> Heard:
    """Speak `text` in voice and play it back as the player would, in scaled time.

    Without `play` the parts are only fetched: a warm-up, so that the fake server has made
    each clip once and its own work (a real server's is inside the latency) adds nothing.
    """
    with tempfile.TemporaryDirectory() as data:
        settings = load_settings(
            env_file=None,
            segmind_api_key=KEY,
            segmind_base_url=base_url,
            segmind_rpm=1000,
            max_text_length=20_000,
            chunk_chars=chunk_chars,
            first_chunk_chars=first_chunk_chars,
            cache_enabled=False,  # Both runs must make their calls.
            data_dir=Path(data),
        )
        services = await open_services(settings)
        try:
            started = time.perf_counter()
            stream = await services.speech.begin(Caller(1), text, destination=Destination.VOICE)
            first = 0.0
            gaps: list[float] = []
            playing_until = 0.0
            async for audio in stream.audio():
                ready = time.perf_counter() - started
                if not first:
                    first = ready
                else:
                    gaps.append(max(0.0, ready - playing_until))
                playing_until = max(ready, playing_until) + audio.duration * scale
                if play:
                    await asyncio.sleep(playing_until - (time.perf_counter() - started))
            calls = services.scheduler.stats.served
        finally:
            await services.close()
    return Heard(first / scale, [g / scale for g in gaps], playing_until / scale, calls)


async def run(args: argparse.Namespace) -> int:
    text = long_text(args.chars)
    print(f"text: {len(text)} characters; time scale {args.scale:g} (figures in real seconds)")
    print(f"{'latency model':26} {'way':8} {'first audio':>11} {'silent gaps':>22} {'calls':>5}")
    met = True
    for name, base, per_char in MODELS:
        latency = ["--latency", str(base * args.scale)]
        per = ["--latency-per-char", str(per_char * args.scale)]
        async with FakeServerProcess("--api-key", KEY, "--shape", "ogg", *latency, *per) as fake:
            whole = len(text) + 1
            ways = {
                "single": {"chunk_chars": whole, "first_chunk_chars": whole},
                "chunked": {
                    "chunk_chars": args.chunk_chars,
                    "first_chunk_chars": args.first_chunk_chars,
                },
            }
            for sizes in ways.values():
                await listen(fake.base_url, text, **sizes, scale=args.scale, play=False)
            single, chunked = [
                await listen(fake.base_url, text, **sizes, scale=args.scale)
                for sizes in ways.values()
            ]
        for way, heard in (("single", single), ("chunked", chunked)):
            gaps = f"{heard.silent:6.1f} s (max {max(heard.gaps, default=0.0):.1f})"
            print(f"{name:26} {way:8} {heard.first:9.1f} s {gaps:>22} {heard.calls:5}")
        if name == MODELS[0][0] and chunked.first > TARGET_RATIO * single.first:
            met = False
        if chunked.silent > 0.5:  # Each part must be ready before the one before it ends.
            met = False
    print(
        f"targets: chunked first audio <= {TARGET_RATIO:.2f} x single under the linear model; "
        "under every model, under 0.5 s of silence between parts"
    )
    print(f"targets met: {'yes' if met else 'no'}")
    return 0 if met else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chars", type=int, default=1500)
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--chunk-chars", type=int, default=500)
    parser.add_argument("--first-chunk-chars", type=int, default=200)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
