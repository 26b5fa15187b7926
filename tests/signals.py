"""A deterministic, speech-like test signal, so tests, benches and the fake Segmind server use
real, non-silent audio that every codec must preserve, without shipping recordings."""

from __future__ import annotations

import math
import sys
from array import array

from bot.audio import GEMINI_CHANNELS, GEMINI_SAMPLE_RATE, Pcm, resample

__all__ = ["tone"]


def tone(
    seconds: float,
    *,
    sample_rate: int = GEMINI_SAMPLE_RATE,
    channels: int = GEMINI_CHANNELS,
    freq: float = 220.0,
) -> Pcm:
    """A deterministic, speech-like signal: a voiced tone whose loudness wobbles like syllables.

    Tests and the fake Segmind server need real, non-silent audio that every codec must
    preserve, without shipping recordings.
    """
    frames = round(seconds * sample_rate)
    if frames < 0:
        raise ValueError(f"tone needs a non-negative length, got {seconds}")
    step = 2 * math.pi * freq / sample_rate
    wobble = 2 * math.pi * 4.0 / sample_rate  # about four "syllables" a second
    samples = array(
        "h",
        (
            int(
                9_000
                * (0.6 + 0.4 * math.sin(wobble * i))
                * (math.sin(step * i) + 0.3 * math.sin(2 * step * i))
            )
            for i in range(frames)
        ),
    )
    if sys.byteorder == "big":
        samples.byteswap()
    return resample(Pcm(samples.tobytes(), sample_rate, 1), sample_rate, channels)
