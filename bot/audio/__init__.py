"""Audio in and out: whatever Segmind sends, decoded; whatever Discord needs, encoded.

Segmind's wrapper around Gemini TTS is undocumented, so the body may be WAV, MP3, Ogg or
headerless PCM. Everything is decoded to one shape (:class:`Pcm`, signed 16-bit little-endian)
and encoded from it, in memory with PyAV's bundled FFmpeg: no system ffmpeg, no temp files.
"""

from __future__ import annotations

import io
import math
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction

import av
import av.error

from bot.errors import AudioError

__all__ = [
    "DISCORD_CHANNELS",
    "DISCORD_FRAME_MS",
    "DISCORD_SAMPLE_RATE",
    "GEMINI_CHANNELS",
    "GEMINI_SAMPLE_RATE",
    "MAX_DECODED_SECONDS",
    "Audio",
    "AudioError",
    "AudioFormat",
    "Pcm",
    "concat",
    "decode",
    "decode_audio",
    "encode",
    "encode_mp3",
    "encode_ogg_opus",
    "encode_wav",
    "pcm_params",
    "probe",
    "resample",
    "sniff_format",
    "to_discord_pcm",
    "tone",
]

GEMINI_SAMPLE_RATE = 24_000
GEMINI_CHANNELS = 1
DISCORD_SAMPLE_RATE = 48_000
DISCORD_CHANNELS = 2
DISCORD_FRAME_MS = 20

#: Decoding stops with an error past this: a speech clip is minutes long at most, and a small
#: crafted Ogg Opus file (1-byte packets of 60 ms each) could otherwise expand to gigabytes.
MAX_DECODED_SECONDS = 30 * 60

_SAMPLE_BYTES = 2
_MIN_RATE, _MAX_RATE = 8_000, 192_000
_MAX_CHANNELS = 8
# Samples per channel in each frame handed to FFmpeg: keeps frames a sane size for long clips.
_CHUNK_FRAMES = 1 << 15
# Sample rates libmp3lame accepts, ascending; others are resampled to one of these.
_MP3_RATES = (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)


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
    """Interleaved signed 16-bit little-endian samples: the one shape every path goes through."""

    data: bytes = field(repr=False)  # megabytes of samples would drown logs and tracebacks
    sample_rate: int
    channels: int

    def __post_init__(self) -> None:
        # Checked here so a bad value fails where it is made, not deep inside FFmpeg.
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if not 1 <= self.channels <= _MAX_CHANNELS:
            raise ValueError(f"channels must be 1..{_MAX_CHANNELS}, got {self.channels}")
        if len(self.data) % (_SAMPLE_BYTES * self.channels):
            raise ValueError(
                f"{len(self.data)} bytes is not a whole number of {self.channels}-channel frames"
            )

    @property
    def frame_count(self) -> int:
        """Samples per channel."""
        return len(self.data) // (_SAMPLE_BYTES * self.channels)

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
        return cls(bytes(frames * channels * _SAMPLE_BYTES), sample_rate, channels)


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


# --- recognising a body ---------------------------------------------------------------------------

_CONTENT_TYPES: dict[str, AudioFormat] = {
    "audio/wav": AudioFormat.WAV,
    "audio/x-wav": AudioFormat.WAV,
    "audio/wave": AudioFormat.WAV,
    "audio/vnd.wave": AudioFormat.WAV,
    "audio/mpeg": AudioFormat.MP3,
    "audio/mp3": AudioFormat.MP3,
    "audio/mpeg3": AudioFormat.MP3,
    "audio/ogg": AudioFormat.OGG,
    "audio/opus": AudioFormat.OGG,
    "application/ogg": AudioFormat.OGG,
    "audio/vorbis": AudioFormat.OGG,
    "audio/l16": AudioFormat.PCM,
    "audio/pcm": AudioFormat.PCM,
    "audio/raw": AudioFormat.PCM,
    "audio/x-raw": AudioFormat.PCM,
}

_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})

# Bytes that start an HTML, XML or JSON document; together with a printable head they mark an
# error page served under a generic type, which would otherwise be "decoded" as PCM noise.
_TEXT_STARTS = (b"<", b"{", b"[")
_PRINTABLE = frozenset(range(0x20, 0x7F)) | frozenset(b"\t\n\r")


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _strong_magic(head: bytes) -> AudioFormat | None:
    """Container signatures that cannot be mistaken for anything else."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return AudioFormat.WAV
    if head[:4] == b"OggS":
        return AudioFormat.OGG
    if head[:3] == b"ID3":
        return AudioFormat.MP3
    return None


def _foreign_magic(head: bytes) -> bool:
    """Audio the bot cannot read (FLAC, AAC, MP4, WebM, AIFF, AMR, CAF): refuse, not play noise."""
    if head[:1] == b"\xff" and len(head) > 1 and head[1] & 0xF6 == 0xF0:  # AAC in ADTS
        return True
    return head[4:8] == b"ftyp" or head.startswith(
        (b"fLaC", b"\x1a\x45\xdf\xa3", b"FORM", b"#!AMR", b"caff")
    )


def _is_mpeg_frame_header(head: bytes) -> bool:
    """An MPEG audio frame sync whose header fields are also legal.

    The bare 11-bit sync (0xFF, 0xE0) also starts quiet PCM now and then (a sample of -1 is
    FF FF), so the reserved version, layer, bitrate and rate codes are ruled out too.
    """
    if len(head) < 2 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    if version == 0b01 or layer == 0b00:
        return False
    # Bitrate code 0 ("free format") is legal but unused in practice, and excluding it keeps
    # PCM that starts -1, 0 (FF FF 00 00: quiet speech) from passing for MP3.
    return len(head) < 3 or (0 < (head[2] >> 4) < 0xF and (head[2] >> 2) & 0b11 != 0b11)


def _looks_like_text(head: bytes) -> bool:
    stripped = head.lstrip()
    return stripped.startswith(_TEXT_STARTS) and all(b in _PRINTABLE for b in head)


def sniff_format(content_type: str | None, head: bytes) -> AudioFormat | None:
    """Which decoder to try on a body, from its Content-Type and first bytes; None: not audio.

    A specific audio type wins, unless the bytes carry another container's unmistakable
    signature (wrappers mislabel; a WAV demuxer cannot read Ogg anyway). Generic types fall
    back to magic bytes, and headerless data is taken as raw PCM, Gemini's native output,
    unless it starts like a text document or an audio format the bot does not read.
    """
    media_type = _media_type(content_type)
    declared = _CONTENT_TYPES.get(media_type)
    if declared is not None:
        return _strong_magic(head) or declared
    if media_type not in _GENERIC_TYPES and not media_type.startswith("audio/"):
        return None
    if not head:
        return None
    found = _strong_magic(head)
    if found is not None:
        return found
    if _is_mpeg_frame_header(head):
        return AudioFormat.MP3
    if _looks_like_text(head) or _foreign_magic(head):
        return None
    return AudioFormat.PCM


def _int_param(value: str, low: int, high: int) -> int | None:
    try:
        number = int(value.strip().strip("\"'"))
    except ValueError:
        return None
    return number if low <= number <= high else None


def pcm_params(content_type: str | None) -> tuple[int, int]:
    """(sample_rate, channels) for headerless PCM, from Content-Type params or Gemini's defaults.

    Out-of-range values fall back to the defaults: a typo upstream should not turn speech
    into a chipmunk at 1 Hz or a divide by zero.
    """
    rate, channels = GEMINI_SAMPLE_RATE, GEMINI_CHANNELS
    for param in (content_type or "").split(";")[1:]:
        key, sep, value = param.partition("=")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("rate", "sample_rate", "samplerate"):
            rate = _int_param(value, _MIN_RATE, _MAX_RATE) or GEMINI_SAMPLE_RATE
        elif key == "channels":
            channels = _int_param(value, 1, _MAX_CHANNELS) or GEMINI_CHANNELS
    return rate, channels


# --- decoding -------------------------------------------------------------------------------------

_DEMUXERS: dict[AudioFormat, str] = {
    AudioFormat.WAV: "wav",
    AudioFormat.MP3: "mp3",
    AudioFormat.OGG: "ogg",
}


def _layout(channels: int) -> str:
    """FFmpeg's default layout for a channel count ("1c" is mono, "2c" stereo, ...)."""
    return f"{channels}c"


def _frame_bytes(frame: av.AudioFrame) -> bytes:
    """The samples of a packed s16 frame, without the plane's alignment padding."""
    size = frame.samples * frame.layout.nb_channels * _SAMPLE_BYTES
    return bytes(memoryview(frame.planes[0])[:size])


def _reason(exc: Exception) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _decode_pcm(data: bytes, sample_rate: int, channels: int) -> Pcm:
    if len(data) % _SAMPLE_BYTES:
        raise AudioError(f"{len(data):,} bytes is an odd length for 16-bit PCM")
    if len(data) % (_SAMPLE_BYTES * channels):
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
                        if not (0 < rate <= _MAX_RATE and 0 < channels <= _MAX_CHANNELS):
                            raise AudioError(f"{name} data claims {rate} Hz, {channels} channels")
                        resampler = av.AudioResampler("s16", _layout(channels), rate)
                    for out in resampler.resample(frame):
                        chunks.append(_frame_bytes(out))
                        total += out.samples
                    if total > MAX_DECODED_SECONDS * rate:
                        raise AudioError(f"{name} data decodes to over {MAX_DECODED_SECONDS} s")
            if resampler is not None:
                chunks.extend(_frame_bytes(out) for out in resampler.resample(None))
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


# --- conversion -----------------------------------------------------------------------------------


def _frames(pcm: Pcm, frame_size: int = _CHUNK_FRAMES) -> Iterator[av.AudioFrame]:
    """Packed s16 frames of ``frame_size`` samples (the last may be shorter), with pts set."""
    step = frame_size * pcm.channels * _SAMPLE_BYTES
    layout = _layout(pcm.channels)
    for start in range(0, len(pcm.data), step):
        chunk = pcm.data[start : start + step]
        frame = av.AudioFrame(
            format="s16", layout=layout, samples=len(chunk) // (pcm.channels * _SAMPLE_BYTES)
        )
        frame.planes[0].update(chunk)
        frame.sample_rate = pcm.sample_rate
        frame.pts = start // (pcm.channels * _SAMPLE_BYTES)
        frame.time_base = Fraction(1, pcm.sample_rate)
        yield frame


def _upmix_mono(data: bytes, channels: int) -> bytes:
    """Copy a mono signal to every channel at full level.

    FFmpeg's mixer would put mono at -3 dB on each side, making speech quieter in voice.
    """
    out = bytearray(len(data) * channels)
    stride = _SAMPLE_BYTES * channels
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
        pcm = Pcm(_upmix_mono(pcm.data, channels), pcm.sample_rate, channels)
        if pcm.sample_rate == sample_rate:
            return pcm
    expected = round(pcm.frame_count * sample_rate / pcm.sample_rate)
    if not pcm.data:
        return target
    resampler = av.AudioResampler("s16", _layout(channels), sample_rate)
    chunks: list[bytes] = []
    for frame in _frames(pcm):
        chunks.extend(_frame_bytes(out) for out in resampler.resample(frame))
    chunks.extend(_frame_bytes(out) for out in resampler.resample(None))
    data = b"".join(chunks)
    size = expected * channels * _SAMPLE_BYTES
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
    parts = [resample(pcm, rate, channels).data for pcm in pcms]
    return Pcm(silence.join(parts), rate, channels)


# --- encoding -------------------------------------------------------------------------------------


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
        writer.setsampwidth(_SAMPLE_BYTES)
        writer.setframerate(pcm.sample_rate)
        writer.writeframes(pcm.data)
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
    frame_size = rate * DISCORD_FRAME_MS // 1000
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.layout = _layout(channels)
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
        # libopus takes a short last frame and pads it itself; every other frame is exact.
        for frame in _frames(source, frame_size):
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
        stream.layout = _layout(channels)
        stream.bit_rate = bitrate
        container.start_encoding()
        codec = stream.codec_context
        # LAME wants planar samples in frames of exactly frame_size (576 or 1152).
        chunker = av.AudioResampler(codec.format, codec.layout, rate, codec.frame_size)
        for frame in _frames(source):
            for out in chunker.resample(frame):
                container.mux(stream.encode(out))
        for out in chunker.resample(None):
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def is_ogg_opus(data: bytes) -> bool:
    """Ogg whose first packet is an OpusHead: playable and postable without transcoding."""
    return data[:4] == b"OggS" and data[28:36] == b"OpusHead"


def to_ogg_opus(audio: Audio) -> Audio:
    """The same speech as Ogg Opus, the one form the bot keeps, posts and plays."""
    if audio.format is AudioFormat.OGG and is_ogg_opus(audio.data):
        return audio
    pcm = decode_audio(audio)
    return Audio(
        data=encode_ogg_opus(pcm),
        format=AudioFormat.OGG,
        sample_rate=DISCORD_SAMPLE_RATE,
        channels=min(pcm.channels, 2),
        duration=pcm.duration,
    )
