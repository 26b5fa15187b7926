"""Changing rate, channels and length: what Discord voice and joined chunks need."""

from __future__ import annotations

from collections.abc import Sequence

import av
import av.error

from bot.audio.pcm import (
    DISCORD_CHANNELS,
    DISCORD_SAMPLE_RATE,
    SAMPLE_BYTES,
    Pcm,
    frame_bytes,
    frames,
    layout,
)

__all__ = ["concat", "resample", "to_discord_pcm"]


def _upmix_mono(data: bytes | memoryview, channels: int) -> bytes:
    """Copy a mono signal to every channel at full level.

    FFmpeg's mixer would put mono at -3 dB on each side, making speech quieter in voice.
    """
    out = bytearray(len(data) * channels)
    stride = SAMPLE_BYTES * channels
    low, high = data[0::2], data[1::2]
    for channel in range(channels):
        out[channel * 2 :: stride] = low
        out[channel * 2 + 1 :: stride] = high
    return bytes(out)


def resample(pcm: Pcm, sample_rate: int, channels: int) -> Pcm:
    """Convert rate and channel count; the result has exactly round(frames * ratio) frames.

    The exact length keeps concatenation and duration checks predictable; FFmpeg's own output
    can be a few samples short for very short inputs.
    """
    target = Pcm(b"", sample_rate, channels)  # validates the arguments
    if (pcm.sample_rate, pcm.channels) == (sample_rate, channels):
        return pcm
    if pcm.channels == 1 and channels > 1:
        pcm = Pcm(_upmix_mono(pcm.samples, channels), pcm.sample_rate, channels)
        if pcm.sample_rate == sample_rate:
            return pcm
    expected = round(pcm.frame_count * sample_rate / pcm.sample_rate)
    if not pcm.samples:
        return target
    resampler = av.AudioResampler("s16", layout(channels), sample_rate)
    chunks: list[bytes] = []
    for frame in frames(pcm):
        chunks.extend(frame_bytes(out) for out in resampler.resample(frame))
    chunks.extend(frame_bytes(out) for out in resampler.resample(None))
    data = b"".join(chunks)
    size = expected * channels * SAMPLE_BYTES
    return Pcm(data[:size].ljust(size, b"\0"), sample_rate, channels)


def to_discord_pcm(pcm: Pcm) -> Pcm:
    """48 kHz stereo, the only PCM Discord voice takes."""
    return resample(pcm, DISCORD_SAMPLE_RATE, DISCORD_CHANNELS)


def concat(pcms: Sequence[Pcm], *, gap: float = 0.0) -> Pcm:
    """Join clips in order at the first one's rate and channels, with ``gap`` seconds between."""
    if not pcms:
        raise ValueError("concat needs at least one clip")
    first = pcms[0]
    rate, channels = first.sample_rate, first.channels
    silence = Pcm.silence(gap, rate, channels).data
    parts = [resample(pcm, rate, channels).samples for pcm in pcms]
    return Pcm(silence.join(parts), rate, channels)
