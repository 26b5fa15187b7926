"""Decoding any upstream body to `Pcm`, in memory with PyAV's bundled FFmpeg (no system
ffmpeg, no temp files), refusing what is not audio with a reason."""

from __future__ import annotations

import io

import av
import av.error

from bot.audio.pcm import (
    GEMINI_CHANNELS,
    GEMINI_SAMPLE_RATE,
    MAX_CHANNELS,
    MAX_DECODED_SECONDS,
    MAX_RATE,
    SAMPLE_BYTES,
    Audio,
    AudioFormat,
    Pcm,
    frame_bytes,
    layout,
)
from bot.errors import AudioError

__all__ = ["decode", "decode_audio", "probe"]

_DEMUXERS: dict[AudioFormat, str] = {
    AudioFormat.WAV: "wav",
    AudioFormat.MP3: "mp3",
    AudioFormat.OGG: "ogg",
}


def _reason(exc: Exception) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _decode_pcm(data: bytes, sample_rate: int, channels: int) -> Pcm:
    if len(data) % SAMPLE_BYTES:
        raise AudioError(f"{len(data):,} bytes is an odd length for 16-bit PCM")
    if len(data) % (SAMPLE_BYTES * channels):
        raise AudioError(
            f"{len(data):,} bytes is not a whole number of {channels}-channel 16-bit frames"
        )
    return Pcm(data, sample_rate, channels)


def _decode_container(data: bytes, fmt: AudioFormat) -> Pcm:
    name = fmt.name
    try:
        # Tags are decoded leniently: a stray byte in an ID3 title is no reason to refuse.
        container = av.open(
            io.BytesIO(data), mode="r", format=_DEMUXERS[fmt], metadata_errors="replace"
        )
    except (av.error.FFmpegError, ValueError) as exc:
        raise AudioError(f"not {name} audio ({_reason(exc)})") from None
    with container:
        if not container.streams.audio:
            raise AudioError(f"no audio stream in the {name} data")
        stream = container.streams.audio[0]
        chunks: list[bytes] = []
        resampler: av.AudioResampler | None = None
        rate = channels = total = 0
        failure: Exception | None = None
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as exc:
                    # One damaged packet costs its few milliseconds, as with the ffmpeg CLI.
                    failure = exc
                    continue
                for frame in frames:
                    if resampler is None:
                        rate, channels = frame.sample_rate, frame.layout.nb_channels
                        if not (0 < rate <= MAX_RATE and 0 < channels <= MAX_CHANNELS):
                            raise AudioError(f"{name} data claims {rate} Hz, {channels} channels")
                        resampler = av.AudioResampler("s16", layout(channels), rate)
                    for out in resampler.resample(frame):
                        chunks.append(frame_bytes(out))
                        total += out.samples
                    if total > MAX_DECODED_SECONDS * rate:
                        raise AudioError(f"{name} data decodes to over {MAX_DECODED_SECONDS} s")
            if resampler is not None:
                chunks.extend(frame_bytes(out) for out in resampler.resample(None))
        except (av.error.FFmpegError, ValueError) as exc:
            # Damage past the first good frames is a truncated clip: keep what decoded.
            failure = exc
            if not chunks:
                raise AudioError(f"undecodable {name} data ({_reason(exc)})") from None
    pcm = b"".join(chunks)
    if not pcm:
        why = f" ({_reason(failure)})" if failure else ""
        raise AudioError(f"no audio samples in the {name} data{why}")
    return Pcm(pcm, rate, channels)


def decode(
    data: bytes,
    fmt: AudioFormat,
    *,
    sample_rate: int = GEMINI_SAMPLE_RATE,
    channels: int = GEMINI_CHANNELS,
) -> Pcm:
    """Decode a whole body to PCM at its own rate and channels, or raise :class:`AudioError`.

    ``sample_rate`` and ``channels`` describe headerless PCM only; containers say their own.
    """
    if not data:
        raise AudioError("empty audio body")
    if fmt is AudioFormat.PCM:
        return _decode_pcm(data, sample_rate, channels)
    return _decode_container(data, fmt)


def probe(
    data: bytes,
    fmt: AudioFormat,
    *,
    sample_rate: int = GEMINI_SAMPLE_RATE,
    channels: int = GEMINI_CHANNELS,
) -> Audio:
    """Check a body really is audio by decoding it all, and measure it; the bytes are kept as-is."""
    pcm = decode(data, fmt, sample_rate=sample_rate, channels=channels)
    return Audio(data, fmt, pcm.sample_rate, pcm.channels, pcm.duration, decoded=pcm)


def decode_audio(audio: Audio) -> Pcm:
    """The samples of an :class:`Audio`: those its check decoded, else decoded now."""
    if audio.decoded is not None:
        return audio.decoded
    return decode(audio.data, audio.format, sample_rate=audio.sample_rate, channels=audio.channels)
