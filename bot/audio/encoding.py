"""Encoding `Pcm` to what members get: Ogg Opus (posted and played), WAV and MP3 (the
terminal's files)."""

from __future__ import annotations

import io
import wave
from dataclasses import replace

import av
import av.error

from bot.audio.convert import resample
from bot.audio.decoding import decode_audio
from bot.audio.ogg_opus import is_ogg_opus
from bot.audio.pcm import (
    DISCORD_FRAME_MS,
    DISCORD_SAMPLE_RATE,
    SAMPLE_BYTES,
    Audio,
    AudioFormat,
    Pcm,
    frames,
    layout,
)

__all__ = [
    "OPUS_BITRATE",
    "OPUS_COMPLEXITY",
    "encode",
    "encode_mp3",
    "encode_ogg_opus",
    "encode_wav",
    "is_ogg_opus",
    "to_ogg_opus",
]

# Sample rates libmp3lame accepts, ascending; others are resampled to one of these.
_MP3_RATES = (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)


def encode(pcm: Pcm, fmt: AudioFormat) -> bytes:
    """Encode with each format's defaults; PCM is returned raw (describe it with ``audio/L16``)."""
    if fmt is AudioFormat.WAV:
        return encode_wav(pcm)
    if fmt is AudioFormat.MP3:
        return encode_mp3(pcm)
    if fmt is AudioFormat.OGG:
        return encode_ogg_opus(pcm)
    return pcm.data


def encode_wav(pcm: Pcm) -> bytes:
    """A canonical 16-bit PCM WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(pcm.channels)
        writer.setsampwidth(SAMPLE_BYTES)
        writer.setframerate(pcm.sample_rate)
        writer.writeframes(pcm.samples)
    return buffer.getvalue()


_OPUS_INPUT_RATES = frozenset({8_000, 12_000, 16_000, 24_000, 48_000})
OPUS_COMPLEXITY = 4
#: Mono speech at 48 kbps is indistinguishable from higher rates, and files stay small.
OPUS_BITRATE = 48_000


def encode_ogg_opus(pcm: Pcm, *, bitrate: int = OPUS_BITRATE, channels: int | None = None) -> bytes:
    """Ogg Opus in 20 ms packets: a Discord attachment, and voice packets as they are.

    FFmpeg writes the encoder delay as the OpusHead pre-skip and sets the last page's granule
    position so decoders drop the final frame's padding: the decoded length equals the input's.
    """
    if channels is None:
        channels = min(pcm.channels, 2)
    if channels not in (1, 2):
        raise ValueError(f"Ogg Opus output is mono or stereo, got {channels} channels")
    # libopus takes these rates as they are: Gemini's 24 kHz needs no resampling (it has
    # nothing above 12 kHz to lose), which also makes encoding about a fifth faster. Decoders
    # always play Opus at 48 kHz.
    rate = pcm.sample_rate if pcm.sample_rate in _OPUS_INPUT_RATES else DISCORD_SAMPLE_RATE
    source = resample(pcm, rate, channels)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.layout = layout(channels)
        stream.format = "s16"
        stream.bit_rate = bitrate
        stream.codec_context.options = {
            "frame_duration": str(DISCORD_FRAME_MS),
            "application": "audio",
            # 4 of 10: still transparent for speech, and about twice as fast as the default
            # 10, which keeps a 20 s clip's encoding well inside the per-request budget
            # (bench/overhead.py).
            "compression_level": str(OPUS_COMPLEXITY),
        }
        container.start_encoding()  # headers even for an empty clip, as with WAV
        # Fed a second at a time: PyAV cuts the input into the encoder's 20 ms frames itself,
        # in C, so the packets are exactly those of 20 ms input frames at half the cost (each
        # Python-level frame costs more than libopus spends on it). libopus pads the last.
        for frame in frames(source, rate):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _mp3_rate(rate: int) -> int:
    """The lowest rate LAME takes that loses nothing of ``rate``, or its highest."""
    return next((candidate for candidate in _MP3_RATES if candidate >= rate), _MP3_RATES[-1])


def encode_mp3(pcm: Pcm, *, bitrate: int = 64_000) -> bytes:
    """MP3 via LAME, with the LAME/Info header so decoders trim encoder delay and padding.

    FFmpeg's mp3 muxer seeks back to fill that header in, which works because the output is
    a BytesIO. Decoders that honour it get the input length: FFmpeg's exactly, except up to
    47 samples (2 ms) too many when the length falls just past a 576/1152-sample frame.
    """
    rate = _mp3_rate(pcm.sample_rate)
    channels = min(pcm.channels, 2)
    source = resample(pcm, rate, channels)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate)
        stream.layout = layout(channels)
        stream.bit_rate = bitrate
        container.start_encoding()
        codec = stream.codec_context
        # LAME wants planar samples in frames of exactly frame_size (576 or 1152).
        chunker = av.AudioResampler(codec.format, codec.layout, rate, codec.frame_size)
        for frame in frames(source):
            for out in chunker.resample(frame):
                container.mux(stream.encode(out))
        for out in chunker.resample(None):
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def to_ogg_opus(audio: Audio) -> Audio:
    """The same speech as Ogg Opus, the one form the bot keeps, posts and plays."""
    if audio.format is AudioFormat.OGG and is_ogg_opus(audio.data):
        # Without the samples a check decoded: whoever keeps the result keeps the bytes only.
        return replace(audio, decoded=None) if audio.decoded is not None else audio
    pcm = decode_audio(audio)
    return Audio(
        data=encode_ogg_opus(pcm),
        format=AudioFormat.OGG,
        sample_rate=DISCORD_SAMPLE_RATE,
        channels=min(pcm.channels, 2),
        duration=pcm.duration,
    )
