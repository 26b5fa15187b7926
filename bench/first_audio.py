"""Time to first audio for a long text: chunked (first chunk small) versus one request.

Runs the bot's own services (`open_services`: the pipeline, scheduler and client) against
the local fake Segmind server, whose latency grows with the text's length, as synthesis
does. "First audio" is the moment the first playable Ogg Opus clip is ready for voice.

    python -m bench.first_audio [--chars 1500] [--base-latency 0.3] [--per-char 0.002]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bot.config import load_settings
from bot.services import open_services
from bot.speech.access import Caller
from bot.synthesis.service import Destination
from tests.fake_segmind import FakeSegmind

KEY = "bench-key"
SENTENCES = (
    "The committee met on Tuesday to review the proposal in detail.",
    "Several members raised concerns about the timeline and the budget.",
    "After a long discussion, they agreed to revisit the question next month.",
    "In the meantime, the working group will gather more data from the field.",
    "Everyone thanked the chair for keeping the meeting short and focused.",
)
TARGET_RATIO = 1 / 3


def long_text(chars: int) -> str:
    words: list[str] = []
    n = 0
    while len(" ".join(words)) < chars:
        words.append(SENTENCES[n % len(SENTENCES)])
        n += 1
    return " ".join(words)[:chars].rsplit(" ", 1)[0] + "."


async def first_audio(
    fake: FakeSegmind, text: str, *, chunk_chars: int, first_chunk_chars: int
) -> tuple[float, float, int]:
    """Seconds to the first clip, seconds to the whole text, and API calls made."""
    with tempfile.TemporaryDirectory() as data:
        settings = load_settings(
            env_file=None,
            segmind_api_key=KEY,
            segmind_base_url=fake.base_url,
            segmind_rpm=1000,
            max_text_length=20_000,
            chunk_chars=chunk_chars,
            first_chunk_chars=first_chunk_chars,
            cache_enabled=False,  # Both runs must make their calls.
            data_dir=Path(data),
        )
        calls_before = fake.tts_calls
        services = await open_services(settings)
        try:
            speech = services.speech
            started = time.perf_counter()
            stream = await speech.begin(Caller(1), text, destination=Destination.VOICE)
            first = 0.0
            async for _clip in speech.ogg_clips(stream.audio(), stream.requests[0]):
                if not first:
                    first = time.perf_counter() - started
            whole = time.perf_counter() - started
        finally:
            await services.close()
    return first, whole, fake.tts_calls - calls_before


async def run(args: argparse.Namespace) -> int:
    text = long_text(args.chars)
    async with FakeSegmind(
        api_key=KEY, latency=args.base_latency, latency_per_char=args.per_char
    ) as fake:
        single = await first_audio(
            fake, text, chunk_chars=len(text) + 1, first_chunk_chars=len(text) + 1
        )
        chunked = await first_audio(
            fake, text, chunk_chars=args.chunk_chars, first_chunk_chars=args.first_chunk_chars
        )
    ratio = chunked[0] / single[0]
    print(f"text: {len(text)} characters")
    print(f"fake latency: {args.base_latency} s + {args.per_char} s per character")
    print(f"one request: first audio {single[0]:.2f} s, all {single[1]:.2f} s, {single[2]} call")
    print(
        f"chunked ({args.first_chunk_chars} then {args.chunk_chars} chars): first audio "
        f"{chunked[0]:.2f} s, all {chunked[1]:.2f} s, {chunked[2]} calls"
    )
    print(f"ratio of first-audio times: {ratio:.3f} (target <= {TARGET_RATIO:.3f})")
    met = ratio <= TARGET_RATIO
    print(f"target met: {'yes' if met else 'no'}")
    return 0 if met else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chars", type=int, default=1500)
    parser.add_argument("--base-latency", type=float, default=0.3)
    parser.add_argument("--per-char", type=float, default=0.002)
    parser.add_argument("--chunk-chars", type=int, default=500)
    parser.add_argument("--first-chunk-chars", type=int, default=200)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
