"""The one shape all audio passes through, and the formats it comes in and goes out as.

Everything is decoded to `Pcm` (signed 16-bit little-endian) and encoded from it, so every
pair of formats needs one decoder and one encoder, not a converter each.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction

import av
import av.error

__all__ = [
    "CHUNK_FRAMES",
    "DISCORD_CHANNELS",
    "DISCORD_FRAME_MS",
    "DISCORD_SAMPLE_RATE",
    "GEMINI_CHANNELS",
    "GEMINI_SAMPLE_RATE",
    "MAX_CHANNELS",
    "MAX_DECODED_BYTES",
    "MAX_DECODED_RATE",
    "SAMPLE_BYTES",
    "Audio",
    "AudioFormat",
    "Pcm",
    "frame_bytes",
    "frames",
    "layout",
]

GEMINI_SAMPLE_RATE = 24_000
GEMINI_CHANNELS = 1
DISCORD_SAMPLE_RATE = 48_000
DISCORD_CHANNELS = 2
DISCORD_FRAME_MS = 20

#: Decoding stops with an error past this many bytes of PCM: a small crafted Ogg Opus file
#: (empty 60 ms packets, eight channels) could otherwise expand to gigabytes. Containers
#: decode to mono at most 48 kHz, so this is 13 minutes at 48 kHz (26 at Gemini's 24 kHz),
#: past the longest answer Gemini TTS gives (about 655 s).
MAX_DECODED_BYTES = 72 * 1024 * 1024
#: The highest rate a container decodes to: Opus always decodes at 48 kHz, and nothing the bot
#: plays needs more.
MAX_DECODED_RATE = 48_000

SAMPLE_BYTES = 2
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_CHANNELS = 8
# Samples per channel in each frame handed to FFmpeg: keeps frames a sane size for long clips.
CHUNK_FRAMES = 1 << 15


class AudioFormat(StrEnum):
    """The encodings the bot can read and write; the value doubles as the file extension."""

    WAV = "wav"
    MP3 = "mp3"
    OGG = "ogg"
    PCM = "pcm"

    @property
    def mime_type(self) -> str:
        """The Content-Type to send with a file of this format."""
        return _MIME_TYPES[self]

    @property
    def extension(self) -> str:
        """The file-name suffix, dot included, for attachments and saved files."""
        return f".{self.value}"

    @classmethod
    def from_extension(cls, path_or_ext: str) -> AudioFormat:
        """Map a file name or suffix (as a user or config would type it) to a format."""
        name = path_or_ext.strip().lower()
        suffix = name.rpartition(".")[2]
        found = _EXTENSIONS.get(suffix)
        if found is None:
            known = ", ".join(sorted(f".{ext}" for ext in _EXTENSIONS))
            raise ValueError(f"unknown audio file type {path_or_ext!r}: use one of {known}")
        return found


_MIME_TYPES: dict[AudioFormat, str] = {
    AudioFormat.WAV: "audio/wav",
    AudioFormat.MP3: "audio/mpeg",
    AudioFormat.OGG: "audio/ogg",
    AudioFormat.PCM: "audio/L16",
}

_EXTENSIONS: dict[str, AudioFormat] = {
    "wav": AudioFormat.WAV,
    "mp3": AudioFormat.MP3,
    "ogg": AudioFormat.OGG,
    "opus": AudioFormat.OGG,
    "pcm": AudioFormat.PCM,
    "raw": AudioFormat.PCM,
}


@dataclass(frozen=True, slots=True)
class Pcm:
    """Interleaved signed 16-bit little-endian samples: the one shape every path goes through.

    ``samples`` may be a read-only view of the bytes they came in (a plain WAV body is its
    samples), so checking and encoding such an answer copies nothing: megabytes per answer
    that the allocator would otherwise keep once freed. The audio path reads ``samples``;
    ``data`` is the same as `bytes`, for everything else.
    """

    samples: bytes | memoryview = field(repr=False)  # megabytes would drown logs and tracebacks
    sample_rate: int
    channels: int

    def __post_init__(self) -> None:
        # Checked here so a bad value fails where it is made, not deep inside FFmpeg.
        samples = self.samples
        if isinstance(samples, memoryview) and not (
            samples.readonly and samples.format == "B" and samples.c_contiguous
        ):
            raise ValueError("samples in a view must be read-only, contiguous bytes")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be 1..{MAX_CHANNELS}, got {self.channels}")
        if len(samples) % (SAMPLE_BYTES * self.channels):
            raise ValueError(
                f"{len(samples)} bytes is not a whole number of {self.channels}-channel frames"
            )

    @property
    def data(self) -> bytes:
        """The samples as `bytes`: copied when they are a view (the audio path avoids this)."""
        samples = self.samples
        return samples if isinstance(samples, bytes) else bytes(samples)

    @property
    def is_view(self) -> bool:
        """Whether the samples are a view of another buffer (they were not copied)."""
        return isinstance(self.samples, memoryview)

    @property
    def frame_count(self) -> int:
        """Samples per channel."""
        return len(self.samples) // (SAMPLE_BYTES * self.channels)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frame_count / self.sample_rate

    @classmethod
    def silence(
        cls,
        seconds: float,
        sample_rate: int = GEMINI_SAMPLE_RATE,
        channels: int = GEMINI_CHANNELS,
    ) -> Pcm:
        """Digital silence, for gaps between sentences and for tests."""
        if seconds < 0 or not math.isfinite(seconds):
            raise ValueError(f"silence needs a finite, non-negative length, got {seconds}")
        frames = round(seconds * sample_rate)
        return cls(bytes(frames * channels * SAMPLE_BYTES), sample_rate, channels)


@dataclass(frozen=True, slots=True)
class Audio:
    """Encoded audio as the API client hands it on: bytes plus facts checked by decoding them."""

    data: bytes = field(repr=False)
    format: AudioFormat
    sample_rate: int
    channels: int
    duration: float
    #: The samples the check decoded, kept so converting it next does not decode it again.
    #: Not part of its value: two Audio with the same bytes are equal whether or not they carry it.
    decoded: Pcm | None = field(default=None, repr=False, compare=False)


def layout(channels: int) -> str:
    """FFmpeg's default layout for a channel count ("1c" is mono, "2c" stereo, ...)."""
    return f"{channels}c"


def frame_bytes(frame: av.AudioFrame) -> bytes:
    """The samples of a packed s16 frame, without the plane's alignment padding."""
    size = frame.samples * frame.layout.nb_channels * SAMPLE_BYTES
    return bytes(memoryview(frame.planes[0])[:size])


def frames(pcm: Pcm, frame_size: int = CHUNK_FRAMES) -> Iterator[av.AudioFrame]:
    """Packed s16 frames of ``frame_size`` samples (the last may be shorter), with pts set."""
    step = frame_size * pcm.channels * SAMPLE_BYTES
    channel_layout = layout(pcm.channels)
    samples = pcm.samples
    for start in range(0, len(samples), step):
        chunk = samples[start : start + step]  # a view's slices are views: nothing copied
        frame = av.AudioFrame(
            format="s16", layout=channel_layout, samples=len(chunk) // (pcm.channels * SAMPLE_BYTES)
        )
        frame.planes[0].update(chunk)  # type: ignore[arg-type]  # any buffer; the stub says bytes
        frame.sample_rate = pcm.sample_rate
        frame.pts = start // (pcm.channels * SAMPLE_BYTES)
        frame.time_base = Fraction(1, pcm.sample_rate)
        yield frame
