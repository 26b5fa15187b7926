"""Decoding any upstream body to `Pcm`, in memory with PyAV's bundled FFmpeg (no system
ffmpeg, no temp files), refusing what is not audio with a reason."""

from __future__ import annotations

import io
import struct
import time

import av
import av.error

from bot.audio.ogg_opus import OPUS_RATE, count_ogg_opus, is_ogg_opus
from bot.audio.pcm import (
    GEMINI_CHANNELS,
    GEMINI_SAMPLE_RATE,
    MAX_CHANNELS,
    MAX_DECODED_BYTES,
    MAX_DECODED_RATE,
    MAX_RATE,
    MIN_RATE,
    SAMPLE_BYTES,
    Audio,
    AudioFormat,
    Pcm,
    layout,
)
from bot.errors import AudioDeadlineError, AudioError

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


def _check_claimed_length(container: av.container.InputContainer, name: str) -> None:
    """Refuse before decoding anything when the container itself says it is too long.

    The Ogg demuxer reads the last page's granule position, so a bomb that tells the truth
    about its length costs nothing; one that lies is caught by the running count instead.
    """
    if container.duration is None or container.duration <= 0:
        return
    seconds = container.duration / av.time_base
    # At the highest rate decoded to: a damaged stream may not say its own.
    if seconds * MAX_DECODED_RATE * SAMPLE_BYTES > MAX_DECODED_BYTES:
        raise AudioError(f"{name} data claims {seconds:,.0f} s, over the decoding budget")


#: Decoded input gathered before it is converted: the resampler costs ~25 µs a call, more than
#: an MP3 frame takes to decode, so frames are converted a few hundred at a time.
_BATCH_BYTES = 256 * 1024


class _Batch:
    """Consecutive decoded frames of one shape, joined plane by plane into one frame."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.shape: tuple[str, str, int] | None = None
        self.planes: list[bytearray] = []
        self.samples = 0
        self.size = 0

    def fits(self, frame: av.AudioFrame) -> bool:
        return self.shape == (frame.format.name, frame.layout.name, frame.sample_rate)

    def add(self, frame: av.AudioFrame) -> None:
        if self.shape is None:
            self.shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        channels = frame.layout.nb_channels
        planar = frame.format.is_planar
        width = frame.format.bytes * frame.samples * (1 if planar else channels)
        # PyAV lists one plane too many for eight planar channels, and that one points nowhere.
        for n, plane in enumerate(frame.planes[: channels if planar else 1]):
            if n == len(self.planes):
                self.planes.append(bytearray())
            self.planes[n] += memoryview(plane)[:width]
            self.size += width
        self.samples += frame.samples

    def take(self) -> av.AudioFrame | None:
        """The gathered frames as one, emptying the batch; None if it is empty."""
        if self.shape is None or not self.samples:
            return None
        fmt, channel_layout, rate = self.shape
        frame = av.AudioFrame(format=fmt, layout=channel_layout, samples=self.samples)
        for plane, gathered in zip(frame.planes, self.planes, strict=False):
            plane.update(bytes(gathered))
        frame.sample_rate = rate
        self._reset()
        return frame


#: Chunks looked at before a WAV header is left to FFmpeg: a valid file has two or three.
_WAV_MAX_CHUNKS = 16


def _plain_wav(data: bytes, deadline: float | None) -> tuple[int, int, int] | None:
    """Where Gemini's own form (16-bit mono PCM WAV at most 48 kHz) keeps its samples (start,
    end, rate), to take them as they are (a view, not a copy); None lets FFmpeg decode it.
    The samples are the file's bytes, and a demuxer walking them packet by packet costs more
    than the Opus encoding that follows. Anything unusual (another sample format, channels,
    a rate to cap, a header it cannot read) goes the general way, which refuses or repairs
    it with the same rules as before.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, fmt_ok = 12, False
    for _ in range(_WAV_MAX_CHUNKS):
        if pos + 8 > len(data):
            return None
        tag, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if tag == b"fmt ":
            if size < 16 or body + 16 > len(data):
                return None
            codec, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            fmt_ok = (codec, channels, bits) == (1, 1, 16) and MIN_RATE <= rate <= MAX_DECODED_RATE
            if not fmt_ok:
                return None
        elif tag == b"data":
            if not fmt_ok:
                return None
            if deadline is not None and time.monotonic() > deadline:
                raise AudioDeadlineError("decoding WAV data ran past the deadline")
            # A streamed WAV says 0xFFFFFFFF: the data runs to the end of the file.
            end = min(len(data), body + size)
            end -= (end - body) % SAMPLE_BYTES
            if end <= body:
                return None
            if end - body > MAX_DECODED_BYTES:
                raise AudioError(f"WAV data decodes to over {MAX_DECODED_BYTES >> 20} MiB")
            return body, end, rate
        pos = body + size + (size & 1)  # chunks are padded to an even length
    return None


def _decode_container(
    data: bytes, fmt: AudioFormat, deadline: float | None, *, keep: bool = True
) -> tuple[bytes | memoryview, int, int]:
    """Decode to mono s16 at no more than 48 kHz, counting output bytes as they stream.

    Channels are folded to mono and the rate capped frame by frame, so the budget in decoded
    bytes bounds memory whatever the file claims: eight channels cost what one does.
    Returns (samples, their size in bytes, rate); with ``keep`` false the samples are only
    counted, and the bytes returned are empty. A plain WAV's samples are a view of ``data``.
    """
    name = fmt.name
    if fmt is AudioFormat.WAV:
        plain = _plain_wav(data, deadline)
        if plain is not None:
            start, end, rate = plain
            return (memoryview(data)[start:end] if keep else b""), end - start, rate
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
        _check_claimed_length(container, name)
        # One buffer grown in place (a large one is remapped, not copied, as it grows), not
        # chunks joined at the end: no second copy of the samples, no heap of freed chunks.
        gathered = bytearray()
        resampler: av.AudioResampler | None = None
        batch = _Batch()
        rate = size = 0
        failure: Exception | None = None
        broken: Exception | None = None

        def convert(frame: av.AudioFrame | None) -> None:
            nonlocal size
            assert resampler is not None
            for out in resampler.resample(frame):
                length = out.samples * SAMPLE_BYTES  # packed mono s16
                size += length
                if size > MAX_DECODED_BYTES:
                    raise AudioError(f"{name} data decodes to over {MAX_DECODED_BYTES >> 20} MiB")
                if keep:
                    gathered.extend(memoryview(out.planes[0])[:length])

        try:
            for packet in container.demux(stream):
                if deadline is not None and time.monotonic() > deadline:
                    raise AudioDeadlineError(f"decoding {name} data ran past the deadline")
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as exc:
                    # One damaged packet costs its few milliseconds, as with the ffmpeg CLI.
                    failure = exc
                    continue
                for frame in frames:
                    if resampler is None:
                        channels = frame.layout.nb_channels
                        if not (0 < frame.sample_rate <= MAX_RATE and 0 < channels <= MAX_CHANNELS):
                            raise AudioError(
                                f"{name} data claims {frame.sample_rate} Hz, {channels} channels"
                            )
                        rate = min(frame.sample_rate, MAX_DECODED_RATE)
                        resampler = av.AudioResampler("s16", layout(1), rate)
                    if batch.samples and not batch.fits(frame):
                        convert(batch.take())
                    batch.add(frame)
                    if batch.size >= _BATCH_BYTES:
                        convert(batch.take())
        except (av.error.FFmpegError, ValueError) as exc:
            # Damage past the first good frames is a truncated clip: keep what decoded.
            failure = broken = exc
        try:  # What was gathered is converted, whatever stopped the reading.
            if resampler is not None:
                pending = batch.take()
                if pending is not None:
                    convert(pending)
                convert(None)
        except (av.error.FFmpegError, ValueError) as exc:
            failure = broken = exc
        if broken is not None and not size:
            raise AudioError(f"undecodable {name} data ({_reason(broken)})") from None
    if not size:
        why = f" ({_reason(failure)})" if failure else ""
        raise AudioError(f"no audio samples in the {name} data{why}")
    return (memoryview(gathered).toreadonly() if keep else b""), size, rate


def decode(
    data: bytes,
    fmt: AudioFormat,
    *,
    sample_rate: int = GEMINI_SAMPLE_RATE,
    channels: int = GEMINI_CHANNELS,
    deadline: float | None = None,
) -> Pcm:
    """Decode a whole body to PCM, or raise :class:`AudioError`.

    Containers decode to mono at their own rate (at most 48 kHz): the bot only ever speaks
    one voice, and folding channels as they stream keeps a many-channel file from costing
    many times the memory. At most `MAX_DECODED_BYTES` come out. ``deadline`` (a
    `time.monotonic` value) is checked between packets, since a decoding thread cannot be
    killed: past it, :class:`AudioDeadlineError`. ``sample_rate`` and ``channels`` describe
    headerless PCM only, which is taken as it is (it cannot expand).
    """
    if not data:
        raise AudioError("empty audio body")
    if fmt is AudioFormat.PCM:
        return _decode_pcm(data, sample_rate, channels)
    pcm, _, rate = _decode_container(data, fmt, deadline)
    return Pcm(pcm, rate, 1)


def probe(
    data: bytes,
    fmt: AudioFormat,
    *,
    sample_rate: int = GEMINI_SAMPLE_RATE,
    channels: int = GEMINI_CHANNELS,
    deadline: float | None = None,
    keep_samples: bool = True,
) -> Audio:
    """Check a body really is audio, and measure it; the bytes are kept as-is.

    The samples ride along as `Audio.decoded` for the next conversion only: whoever keeps the
    value for long (the cache) must drop them, or it holds ten times what it counts. With
    ``keep_samples`` false (Ogg Opus, which is passed through as it is) nothing is gathered:
    one mono or stereo Opus stream is checked by its structure and counted from its packets'
    TOC bytes and a few decoded (`count_ogg_opus`), any other body decoded and counted.
    Either way the answer is what decoding it would say: 48 kHz mono, as long as it plays.
    """
    if not data:
        raise AudioError("empty audio body")
    if fmt is AudioFormat.PCM:
        pcm = _decode_pcm(data, sample_rate, channels)
        return Audio(data, fmt, pcm.sample_rate, pcm.channels, pcm.duration, decoded=pcm)
    if fmt is AudioFormat.OGG and not keep_samples and is_ogg_opus(data):
        counted = count_ogg_opus(data, deadline)
        if counted is not None:
            return Audio(data, fmt, OPUS_RATE, 1, counted / OPUS_RATE)
    samples, size, rate = _decode_container(data, fmt, deadline, keep=keep_samples)
    decoded = Pcm(samples, rate, 1) if keep_samples else None
    return Audio(data, fmt, rate, 1, size / SAMPLE_BYTES / rate, decoded=decoded)


def decode_audio(audio: Audio) -> Pcm:
    """The samples of an :class:`Audio`: those its check decoded, else decoded now."""
    if audio.decoded is not None:
        return audio.decoded
    return decode(audio.data, audio.format, sample_rate=audio.sample_rate, channels=audio.channels)
