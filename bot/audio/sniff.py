"""Recognising a body: Segmind's wrapper is undocumented, so it may be WAV, MP3, Ogg or
headerless PCM, under a content type that may be generic or wrong; and a 200 may carry an
HTML page or JSON. Magic bytes decide, the content type only breaks ties."""

from __future__ import annotations

from bot.audio.pcm import (
    GEMINI_CHANNELS,
    GEMINI_SAMPLE_RATE,
    MAX_CHANNELS,
    MAX_RATE,
    MIN_RATE,
    AudioFormat,
)

__all__ = ["pcm_params", "sniff_format"]

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
            rate = _int_param(value, MIN_RATE, MAX_RATE) or GEMINI_SAMPLE_RATE
        elif key == "channels":
            channels = _int_param(value, 1, MAX_CHANNELS) or GEMINI_CHANNELS
    return rate, channels
