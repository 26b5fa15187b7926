"""Tests for bot.audio on real audio made and decoded by PyAV's FFmpeg: no mocks."""

from __future__ import annotations

import io
import math
import random
import struct
import sys
import wave
from array import array
from collections.abc import Callable
from functools import cache

import av
import discord.oggparse
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.audio import (
    DISCORD_CHANNELS,
    DISCORD_FRAME_MS,
    DISCORD_SAMPLE_RATE,
    GEMINI_CHANNELS,
    GEMINI_SAMPLE_RATE,
    Audio,
    AudioFormat,
    Pcm,
    concat,
    decode,
    decode_audio,
    encode,
    encode_mp3,
    encode_ogg_opus,
    encode_wav,
    pcm_params,
    probe,
    resample,
    sniff_format,
    to_discord_pcm,
)
from bot.audio import decoding as audio_decode
from bot.errors import AudioError
from tests.signals import tone

WAV, MP3, OGG, PCM = AudioFormat.WAV, AudioFormat.MP3, AudioFormat.OGG, AudioFormat.PCM
CONTAINERS = (WAV, MP3, OGG)

# The bounds the bot relies on; FFmpeg actually gets every format to the exact sample.
TOLERANCE = {WAV: 0.0, PCM: 0.0, OGG: 0.030, MP3: 0.050}
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

OPUS_FRAME = DISCORD_SAMPLE_RATE * DISCORD_FRAME_MS // 1000  # 960 samples


# --- helpers --------------------------------------------------------------------------------------


def samples(pcm: Pcm) -> array[int]:
    values = array("h", pcm.data)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def channel(pcm: Pcm, index: int) -> array[int]:
    return samples(pcm)[index :: pcm.channels]


def similarity(a: Pcm, b: Pcm) -> float:
    """Normalised correlation at zero lag: near 1 only if b is a and lines up with it in time."""
    x, y = channel(a, 0), channel(b, 0)
    n = min(len(x), len(y))
    dot = sum(x[i] * y[i] for i in range(n))
    norm = math.sqrt(sum(v * v for v in x[:n]) * sum(v * v for v in y[:n]))
    return dot / norm if norm else 0.0


def peak(pcm: Pcm) -> int:
    return max((abs(v) for v in samples(pcm)), default=0)


def opus_packets(data: bytes) -> list[bytes]:
    """Packets the way the bot will hand them to Discord voice."""
    return list(discord.oggparse.OggStream(io.BytesIO(data)).iter_packets())


def last_granule(data: bytes) -> int:
    """The granule position of the final Ogg page, which tells decoders where audio ends."""
    start = data.rindex(b"OggS")
    (granule,) = struct.unpack_from("<q", data, start + 6)
    return int(granule)


def opus_frame_ms(toc: int) -> float:
    """Frame length from an Opus TOC byte (RFC 6716, section 3.1)."""
    config = toc >> 3
    if config < 12:
        return (10, 20, 40, 60)[config % 4]
    if config < 16:
        return (10, 20)[config % 2]
    return (2.5, 5, 10, 20)[config % 4]


def encode_with_pyav(pcm: Pcm, codec: str, container_format: str, **options: str) -> bytes:
    """Encode with an FFmpeg codec bot.audio never writes, to test decoding what others send."""
    layout = "mono" if pcm.channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=pcm.sample_rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = layout
        stream.codec_context.options = dict(options)
        container.start_encoding()
        context = stream.codec_context
        resampler = av.AudioResampler(
            context.format, layout, pcm.sample_rate, context.frame_size or None
        )
        frame = av.AudioFrame(format="s16", layout=layout, samples=pcm.frame_count)
        frame.planes[0].update(pcm.data)
        frame.sample_rate = pcm.sample_rate
        for out in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))
    return buffer.getvalue()


@cache
def encoded(fmt: AudioFormat) -> bytes:
    """One valid 0.3 s file per format, shared by the rejection and fuzz tests."""
    return encode(tone(0.3), fmt)


# --- AudioFormat and the value types --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime", "ext"),
    [
        (WAV, "audio/wav", ".wav"),
        (MP3, "audio/mpeg", ".mp3"),
        (OGG, "audio/ogg", ".ogg"),
        (PCM, "audio/L16", ".pcm"),
    ],
)
def test_format_mime_type_and_extension(fmt: AudioFormat, mime: str, ext: str) -> None:
    assert fmt.mime_type == mime
    assert fmt.extension == ext
    assert AudioFormat.from_extension(ext) is fmt


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        (".ogg", OGG),
        ("opus", OGG),
        ("speech.OPUS", OGG),
        ("/tmp/a.b/clip.wav", WAV),
        ("MP3", MP3),
        (".raw", PCM),
        ("dump.pcm", PCM),
    ],
)
def test_format_from_extension(name: str, fmt: AudioFormat) -> None:
    assert AudioFormat.from_extension(name) is fmt


@pytest.mark.parametrize("name", [".flac", "clip.m4a", "", "wav.txt"])
def test_format_from_unknown_extension_names_the_choices(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown audio file type.*\.ogg.*\.wav"):
        AudioFormat.from_extension(name)


def test_pcm_measures_itself() -> None:
    pcm = Pcm(bytes(4 * 1200), 24_000, 2)
    assert pcm.frame_count == 1200
    assert pcm.duration == pytest.approx(0.05)
    assert "data" not in repr(pcm)


@pytest.mark.parametrize(
    ("data", "rate", "channels"),
    [(b"\0\0", 0, 1), (b"\0\0", 24_000, 0), (b"\0\0", 24_000, 9), (b"\0\0\0", 24_000, 1)],
)
def test_pcm_rejects_impossible_values(data: bytes, rate: int, channels: int) -> None:
    with pytest.raises(ValueError, match=r"sample_rate|channels|whole number"):
        Pcm(data, rate, channels)


def test_pcm_silence() -> None:
    quiet = Pcm.silence(0.25)
    assert (quiet.sample_rate, quiet.channels, quiet.frame_count) == (24_000, 1, 6000)
    assert quiet.data == bytes(12_000)
    assert Pcm.silence(0.01, 48_000, 2).frame_count == 480
    with pytest.raises(ValueError, match="non-negative"):
        Pcm.silence(-1)


def test_constants_match_gemini_and_discord() -> None:
    assert (GEMINI_SAMPLE_RATE, GEMINI_CHANNELS) == (24_000, 1)
    assert (DISCORD_SAMPLE_RATE, DISCORD_CHANNELS, DISCORD_FRAME_MS) == (48_000, 2, 20)


# --- sniff_format ---------------------------------------------------------------------------------

WAV_HEAD = encode_wav(tone(0.01))[:64]
OGG_HEAD = b"OggS\x00\x02" + bytes(58)
ID3_HEAD = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(54)
MPEG_HEAD = b"\xff\xf3\x64\xc4" + bytes(60)  # MPEG-2 layer III, 24 kHz: a bare MP3 frame
PCM_HEAD = tone(0.01).data[:64]
QUIET_PCM_HEAD = b"\xff\xff\x00\x00\xfe\xff\x01\x00" * 8  # samples -1, 0, -2, 1: not an MP3 frame


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("audio/wav", WAV),
        ("audio/x-wav", WAV),
        ("audio/wave", WAV),
        ("audio/vnd.wave", WAV),
        ("audio/mpeg", MP3),
        ("audio/mp3", MP3),
        ("audio/mpeg3", MP3),
        ("audio/ogg", OGG),
        ("audio/opus", OGG),
        ("application/ogg", OGG),
        ("audio/vorbis", OGG),
        ("audio/l16", PCM),
        ("audio/L16; rate=24000; channels=1", PCM),
        ("audio/pcm", PCM),
        ("audio/raw", PCM),
        ("audio/x-raw", PCM),
        ("Audio/MPEG; charset=binary", MP3),
        ("  audio/ogg ; codecs=opus", OGG),
    ],
)
def test_sniff_trusts_a_known_audio_content_type(content_type: str, fmt: AudioFormat) -> None:
    assert sniff_format(content_type, PCM_HEAD) is fmt


@pytest.mark.parametrize(
    ("content_type", "head", "fmt"),
    [
        (None, WAV_HEAD, WAV),
        ("", OGG_HEAD, OGG),
        ("application/octet-stream", ID3_HEAD, MP3),
        ("binary/octet-stream", MPEG_HEAD, MP3),
        ("audio/basic", WAV_HEAD, WAV),
        ("audio/x-unknown", PCM_HEAD, PCM),
        (None, PCM_HEAD, PCM),
        ("application/octet-stream", QUIET_PCM_HEAD, PCM),
        (None, b"\xff\xff\xff\xff", PCM),  # sync bits, but bitrate code 15 is reserved
        (None, b"\xff\xe9\x90\x00", PCM),  # sync bits, but version code 1 is reserved
        (None, b"\xff\xfb", MP3),  # too short to rule out
        (None, b"\x01", PCM),
    ],
)
def test_sniff_reads_magic_bytes_under_a_generic_type(
    content_type: str | None, head: bytes, fmt: AudioFormat
) -> None:
    assert sniff_format(content_type, head) is fmt


@pytest.mark.parametrize(
    ("content_type", "head", "fmt"),
    [
        ("audio/mpeg", OGG_HEAD, OGG),
        ("audio/wav", ID3_HEAD, MP3),
        ("audio/L16; rate=24000", WAV_HEAD, WAV),
        ("audio/ogg", WAV_HEAD, WAV),
        ("audio/L16", MPEG_HEAD, PCM),  # a frame sync alone is too weak to overrule the label
        ("audio/wav", PCM_HEAD, WAV),
    ],
)
def test_sniff_lets_an_unmistakable_signature_overrule_the_label(
    content_type: str, head: bytes, fmt: AudioFormat
) -> None:
    assert sniff_format(content_type, head) is fmt


@pytest.mark.parametrize(
    ("content_type", "head"),
    [
        ("text/html; charset=utf-8", b"<!DOCTYPE html><html>"),
        ("text/html", WAV_HEAD),
        ("text/plain", PCM_HEAD),
        ("application/json", b'{"audio": "UklGR"}'),
        ("image/png", b"\x89PNG\r\n\x1a\n"),
        ("video/mp4", OGG_HEAD),
        ("multipart/form-data", PCM_HEAD),
        (None, b""),
        ("application/octet-stream", b""),
        ("audio/x-unknown", b""),
        ("audio/flac", b"fLaC\x00\x00\x00\x22"),
        ("audio/aac", b"\xff\xf1\x50\x80\x02\x1f\xfc"),
        ("audio/mp4", b"\x00\x00\x00\x20ftypM4A "),
        ("audio/webm", b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81"),
        ("application/octet-stream", b"FORM\x00\x00\x10\x00AIFF"),
        (None, b"#!AMR\n"),
        (None, b"<html><head><title>502 Bad Gateway</title>"),
        ("application/octet-stream", b'  {"error": "quota exceeded"}'),
        ("binary/octet-stream", b"[1, 2, 3]"),
    ],
)
def test_sniff_refuses_what_is_not_audio(content_type: str | None, head: bytes) -> None:
    assert sniff_format(content_type, head) is None


# --- pcm_params -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, (24_000, 1)),
        ("", (24_000, 1)),
        ("audio/L16", (24_000, 1)),
        ("audio/L16; rate=48000; channels=2", (48_000, 2)),
        ("audio/L16;rate=16000", (16_000, 1)),
        ("audio/l16; CHANNELS=2", (24_000, 2)),
        ('audio/L16; rate="22050"', (22_050, 1)),
        ("audio/pcm; sample_rate=44100", (44_100, 1)),
        ("audio/L16; rate=abc; channels=two", (24_000, 1)),
        ("audio/L16; rate=0; channels=0", (24_000, 1)),
        ("audio/L16; rate=7999; channels=9", (24_000, 1)),
        ("audio/L16; rate=192000; channels=8", (192_000, 8)),
        ("audio/L16; rate=1000000", (24_000, 1)),
        ("audio/L16; rate; channels", (24_000, 1)),
        ("audio/L16; rate=-24000", (24_000, 1)),
    ],
)
def test_pcm_params(content_type: str | None, expected: tuple[int, int]) -> None:
    assert pcm_params(content_type) == expected


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(AudioFormat))
@pytest.mark.parametrize(
    ("seconds", "rate", "channels"),
    [(0.517, 24_000, 1), (0.3, 48_000, 2), (0.25, 44_100, 1), (0.013, 24_000, 1)],
)
def test_round_trip(fmt: AudioFormat, seconds: float, rate: int, channels: int) -> None:
    original = tone(seconds, sample_rate=rate, channels=channels)
    data = encode(original, fmt)

    head = data[:64]
    assert sniff_format(fmt.mime_type, head) is fmt
    assert sniff_format(None, head) is fmt  # magic bytes alone suffice; raw PCM by elimination

    found = probe(data, fmt, sample_rate=rate, channels=channels)
    assert found.data is data
    assert found.format is fmt
    # Containers decode folded to mono (the bot speaks one voice); raw PCM is taken as it is.
    assert found.channels == (channels if fmt is PCM else 1)
    assert found.sample_rate == (DISCORD_SAMPLE_RATE if fmt is OGG else rate)
    assert abs(found.duration - original.duration) <= TOLERANCE[fmt]

    decoded = decode_audio(found)
    assert decoded.duration == found.duration
    # Same signal, in time with the original: encoder delay was trimmed, not left as a shift.
    assert similarity(original, resample(decoded, rate, channels)) > 0.95


@pytest.mark.parametrize("seconds", [0.001, 0.0242, 0.02, 0.0213, 1.234])
def test_opus_and_mp3_are_gapless_to_the_sample(seconds: float) -> None:
    original = tone(seconds)
    opus = decode(encode_ogg_opus(original), OGG)
    assert abs(opus.frame_count - round(seconds * DISCORD_SAMPLE_RATE)) <= 1
    mp3 = decode(encode_mp3(original), MP3)
    # Exact, except that FFmpeg keeps up to 47 padding samples (2 ms) when the length is just
    # past a multiple of the 576-sample frame; never short.
    assert 0 <= mp3.frame_count - original.frame_count <= 47


def test_pcm_round_trip_is_byte_exact() -> None:
    original = tone(0.2, sample_rate=16_000, channels=2)
    assert encode(original, PCM) == original.data
    assert decode(original.data, PCM, sample_rate=16_000, channels=2) == original


def test_wav_is_canonical_16_bit() -> None:
    original = tone(0.1, sample_rate=22_050, channels=2)
    with wave.open(io.BytesIO(encode_wav(original))) as reader:
        assert reader.getnchannels() == 2
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == 22_050
        assert reader.readframes(reader.getnframes()) == original.data


@pytest.mark.parametrize(("codec", "bits"), [("pcm_f32le", 32), ("pcm_s24le", 24), ("pcm_u8", 8)])
def test_decodes_wav_of_other_sample_formats(codec: str, bits: int) -> None:
    original = tone(0.4)
    data = encode_with_pyav(original, codec, "wav")
    assert int.from_bytes(data[34:36], "little") == bits
    pcm = decode(data, WAV)
    assert (pcm.sample_rate, pcm.channels, pcm.frame_count) == (24_000, 1, original.frame_count)
    assert similarity(original, pcm) > 0.99


def test_decodes_a_streamed_wav_with_unknown_sizes() -> None:
    original = tone(0.3)
    data = bytearray(encode_wav(original))
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"  # what a streaming server writes up front
    pcm = decode(bytes(data), WAV)
    assert pcm.frame_count == original.frame_count


def test_decodes_ogg_vorbis() -> None:
    original = tone(0.5, channels=2)
    # FFmpeg's own Vorbis encoder is experimental and stereo-only, but decodes like any other.
    data = encode_with_pyav(original, "vorbis", "ogg", strict="experimental")
    assert data[28:35] == b"\x01vorbis"
    assert sniff_format("audio/ogg", data[:64]) is OGG
    found = probe(data, OGG)
    assert (found.sample_rate, found.channels) == (24_000, 1)
    assert abs(found.duration - original.duration) <= TOLERANCE[OGG]
    assert peak(decode_audio(found)) > 1000


def test_decodes_mp3_without_an_id3_tag() -> None:
    data = encode_mp3(tone(0.5))
    size = 0
    for byte in data[6:10]:  # the ID3v2 tag size: four 7-bit ("synchsafe") bytes
        size = size << 7 | byte
    start = 10 + size
    bare = data[start:]
    assert bare[0] == 0xFF
    assert sniff_format(None, bare[:64]) is MP3
    assert abs(decode(bare, MP3).duration - 0.5) <= TOLERANCE[MP3]


# --- encoder details ------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.013, 0.5, 1.0, 2.777])
def test_ogg_opus_packets_feed_discord_voice(seconds: float) -> None:
    original = tone(seconds)
    data = encode_ogg_opus(original, channels=2)
    packets = opus_packets(data)
    assert packets[0].startswith(b"OpusHead")
    assert packets[1].startswith(b"OpusTags")
    voice = packets[2:]
    # Every packet is one 20 ms frame (TOC code 0), as Discord voice expects.
    assert all(packet[0] & 0b11 == 0 for packet in voice)
    assert {opus_frame_ms(packet[0]) for packet in voice} == {DISCORD_FRAME_MS}
    pre_skip = int.from_bytes(packets[0][10:12], "little")
    total = round(seconds * DISCORD_SAMPLE_RATE)
    assert len(voice) == math.ceil((total + pre_skip) / OPUS_FRAME)
    assert len(voice) * DISCORD_FRAME_MS / 1000 >= seconds
    assert len(voice) * DISCORD_FRAME_MS / 1000 < seconds + 0.020 + pre_skip / 48_000
    # The last page's granule is what makes decoders drop the final frame's padding.
    assert last_granule(data) == pre_skip + total


@pytest.mark.parametrize(
    ("source_channels", "requested", "expected"),
    [(1, None, 1), (2, None, 2), (6, None, 2), (1, 2, 2), (2, 1, 1)],
)
def test_ogg_opus_channels(source_channels: int, requested: int | None, expected: int) -> None:
    data = encode_ogg_opus(tone(0.1, channels=source_channels), channels=requested)
    head = opus_packets(data)[0]
    assert head[9] == expected
    pcm = decode(data, OGG)
    assert (pcm.sample_rate, pcm.channels) == (DISCORD_SAMPLE_RATE, 1)  # folded as decoded


def test_ogg_opus_stereo_from_mono_keeps_both_sides_equal() -> None:
    with av.open(io.BytesIO(encode_ogg_opus(tone(0.3), channels=2)), mode="r") as container:
        packed = av.AudioResampler("s16", "stereo", DISCORD_SAMPLE_RATE)
        frames = [out for f in container.decode(audio=0) for out in packed.resample(f)]
    data = b"".join(bytes(memoryview(f.planes[0])[: f.samples * 4]) for f in frames)
    pcm = Pcm(data, DISCORD_SAMPLE_RATE, 2)
    left, right = channel(pcm, 0), channel(pcm, 1)
    assert peak(pcm) > 5_000
    assert max(abs(a - b) for a, b in zip(left, right, strict=True)) < 200


@pytest.mark.parametrize("channels", [0, 3])
def test_ogg_opus_refuses_other_channel_counts(channels: int) -> None:
    with pytest.raises(ValueError, match="mono or stereo"):
        encode_ogg_opus(tone(0.1), channels=channels)


@pytest.mark.parametrize("encoder", [encode_ogg_opus, encode_mp3])
def test_bitrate_sets_the_size(encoder: Callable[..., bytes]) -> None:
    clip = tone(2.0)
    small, large = encoder(clip, bitrate=24_000), encoder(clip, bitrate=128_000)
    assert len(small) < len(large) / 2
    assert len(small) < 2.0 * 24_000 / 8 * 1.3


@pytest.mark.parametrize(("seconds", "rate"), [(0.5, 24_000), (0.77, 44_100)])
def test_mp3_carries_the_gapless_header(seconds: float, rate: int) -> None:
    """The Xing/Info + LAME tag tells decoders how much delay and padding to cut."""
    original = tone(seconds, sample_rate=rate)
    data = encode_mp3(original)
    assert data.startswith(b"ID3")
    frame = data.index(b"\xff")  # the first MPEG frame, after the ID3 tag, carries the tag
    samples_per_frame = 1152 if data[frame + 1] & 0b1000 else 576  # MPEG-1 or MPEG-2
    tag = max(data.find(name, frame, frame + 64) for name in (b"Info", b"Xing"))
    assert tag > 0
    (flags,) = struct.unpack_from(">I", data, tag + 4)
    assert flags & 1  # the frame count is present
    (frames,) = struct.unpack_from(">I", data, tag + 8)
    lame = tag + 8 + 4 * bin(flags & 0b1011).count("1") + (100 if flags & 0b100 else 0)
    delay_padding = int.from_bytes(data[lame + 21 : lame + 24], "big")
    delay, padding = delay_padding >> 12, delay_padding & 0xFFF
    assert delay > 0
    assert frames * samples_per_frame - delay - padding == original.frame_count


@pytest.mark.parametrize(
    ("rate", "channels", "mp3_rate", "mp3_channels"),
    [
        (24_000, 1, 24_000, 1),
        (44_100, 2, 44_100, 2),
        (96_000, 1, 48_000, 1),
        (23_000, 6, 24_000, 2),
    ],
)
def test_mp3_picks_a_rate_and_layout_lame_supports(
    rate: int, channels: int, mp3_rate: int, mp3_channels: int
) -> None:
    data = encode_mp3(tone(0.2, sample_rate=rate, channels=channels))
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        assert (stream.rate, stream.channels) == (mp3_rate, mp3_channels)
    found = probe(data, MP3)
    assert (found.sample_rate, found.channels) == (mp3_rate, 1)
    assert abs(found.duration - 0.2) <= TOLERANCE[MP3]


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_an_empty_clip_encodes_but_is_refused_as_speech(fmt: AudioFormat) -> None:
    data = encode(Pcm(b"", 24_000, 1), fmt)
    assert sniff_format(None, data[:64]) in (fmt, None)
    with pytest.raises(AudioError):
        decode(data, fmt)


def test_encode_dispatches_on_format() -> None:
    clip = tone(0.05)
    assert encode(clip, PCM) == clip.data
    assert encode(clip, WAV)[:4] == b"RIFF"
    assert encode(clip, MP3)[:3] == b"ID3"
    assert encode(clip, OGG)[:4] == b"OggS"


# --- rejections -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_rejects_an_empty_body(fmt: AudioFormat) -> None:
    with pytest.raises(AudioError, match="empty"):
        decode(b"", fmt)
    with pytest.raises(AudioError, match="empty"):
        probe(b"", fmt)


BAD_BODIES = {
    "html": b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>" * 4,
    "json": b'{"error": {"message": "Insufficient credits", "code": 402}}',
    "random": random.Random(1234).randbytes(8192),
    "text": b"Internal Server Error",
}


@pytest.mark.parametrize("fmt", CONTAINERS)
@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_rejects_non_audio_under_an_audio_label(fmt: AudioFormat, body: bytes) -> None:
    with pytest.raises(AudioError, match=fmt.name):
        decode(body, fmt)


def test_random_bytes_labelled_wav_are_sniffed_as_wav_then_rejected() -> None:
    body = BAD_BODIES["random"]
    fmt = sniff_format("audio/wav", body[:64])
    assert fmt is WAV
    with pytest.raises(AudioError):
        probe(body, fmt)


@pytest.mark.parametrize("cut", [4, 12, 20, 36, 43])
def test_rejects_a_truncated_wav_header(cut: int) -> None:
    with pytest.raises(AudioError):
        decode(encoded(WAV)[:cut], WAV)


def test_rejects_a_wav_without_samples() -> None:
    with pytest.raises(AudioError, match="no audio samples"):
        decode(encode_wav(Pcm(b"", 24_000, 1)), WAV)


@pytest.mark.parametrize("fmt", [OGG, MP3])
def test_rejects_a_container_cut_before_its_audio(fmt: AudioFormat) -> None:
    with pytest.raises(AudioError):
        decode(encoded(fmt)[:60], fmt)


def test_rejects_odd_length_pcm() -> None:
    with pytest.raises(AudioError, match="odd"):
        decode(b"\x01\x02\x03", PCM)


def test_rejects_pcm_that_is_not_whole_frames() -> None:
    with pytest.raises(AudioError, match="whole number of 2-channel"):
        decode(b"\0" * 6, PCM, channels=2)


def test_rejects_audio_longer_than_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio_decode, "MAX_DECODED_BYTES", 1000)
    with pytest.raises(AudioError, match="over"):
        decode(encoded(WAV), WAV)


def test_probe_measures_pcm_with_the_given_params() -> None:
    clip = tone(0.5, sample_rate=16_000, channels=2)
    found = probe(clip.data, PCM, sample_rate=16_000, channels=2)
    assert found == Audio(clip.data, PCM, 16_000, 2, 0.5)
    assert decode_audio(found) == clip


# --- fuzzing --------------------------------------------------------------------------------------


def check_decodes_or_refuses(data: bytes, fmt: AudioFormat, **params: int) -> None:
    try:
        pcm = decode(data, fmt, **params)
    except AudioError:
        return  # anything else (FFmpeg's own errors, crashes, hangs) fails the test
    assert isinstance(pcm, Pcm)
    assert pcm.frame_count > 0


@FUZZ
@given(data=st.binary(max_size=4096), fmt=st.sampled_from(AudioFormat))
def test_fuzz_arbitrary_bytes(data: bytes, fmt: AudioFormat) -> None:
    check_decodes_or_refuses(data, fmt)


@FUZZ
@given(data=st.binary(max_size=512), channels=st.integers(1, 8))
def test_fuzz_pcm_channels(data: bytes, channels: int) -> None:
    check_decodes_or_refuses(data, PCM, channels=channels)


@FUZZ
@given(
    fmt=st.sampled_from(CONTAINERS),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8),
    cut=st.floats(0, 1),
    header=st.booleans(),
)
def test_fuzz_damaged_files(
    fmt: AudioFormat, edits: list[tuple[float, int]], cut: float, header: bool
) -> None:
    """Real files with bytes overwritten (in the header, or anywhere) and the tail cut off."""
    data = bytearray(encoded(fmt))
    span = 64 if header else len(data)
    for where, value in edits:
        data[int(where * span)] = value
    check_decodes_or_refuses(bytes(data[: max(1, int(cut * len(data)))]), fmt)


# --- resample, concat, tone -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "source", "target", "channels", "expected"),
    [
        (24_000, 24_000, 48_000, 2, 48_000),
        (24_000, 24_000, 44_100, 1, 44_100),
        (24_000, 24_000, 16_000, 1, 16_000),
        (24_312, 24_000, 44_100, 1, 44_673),
        (24, 24_000, 48_000, 2, 48),
        (24, 24_000, 16_000, 1, 16),
        (1, 24_000, 48_000, 1, 2),
        (0, 24_000, 48_000, 2, 0),
        (44_100, 44_100, 24_000, 1, 24_000),
    ],
)
def test_resample_frame_counts(
    frames: int, source: int, target: int, channels: int, expected: int
) -> None:
    pcm = tone(frames / source, sample_rate=source)
    assert pcm.frame_count == frames
    out = resample(pcm, target, channels)
    assert (out.sample_rate, out.channels, out.frame_count) == (target, channels, expected)


def test_resample_identity_is_free() -> None:
    pcm = tone(0.1)
    assert resample(pcm, 24_000, 1) is pcm


def test_resample_keeps_the_signal() -> None:
    pcm = tone(0.5)
    there_and_back = resample(resample(pcm, 44_100, 2), 24_000, 1)
    assert there_and_back.frame_count == pcm.frame_count
    assert similarity(pcm, there_and_back) > 0.99
    assert abs(peak(there_and_back) - peak(pcm)) < peak(pcm) * 0.05


def test_mono_to_stereo_copies_at_full_level() -> None:
    pcm = tone(0.1)
    stereo = resample(pcm, 24_000, 2)
    assert channel(stereo, 0) == channel(stereo, 1) == samples(pcm)


def test_stereo_to_mono_averages() -> None:
    left = Pcm(struct.pack("<4h", 1000, 3000, -1000, -3000), 24_000, 2)
    assert samples(resample(left, 24_000, 1)).tolist() == [2000, -2000]


def test_resample_refuses_impossible_targets() -> None:
    with pytest.raises(ValueError, match="channels"):
        resample(tone(0.1), 24_000, 0)
    with pytest.raises(ValueError, match="sample_rate"):
        resample(tone(0.1), 0, 1)


@pytest.mark.parametrize(
    ("rate", "channels", "expected"),
    [(24_000, 1, 24_000), (44_100, 1, 24_000), (48_000, 2, 24_000), (16_000, 2, 24_000)],
)
def test_to_discord_pcm(rate: int, channels: int, expected: int) -> None:
    pcm = tone(0.5, sample_rate=rate, channels=channels)
    out = to_discord_pcm(pcm)
    assert (out.sample_rate, out.channels) == (48_000, 2)
    assert out.frame_count == expected
    assert len(out.data) == expected * 4


def test_concat_durations_and_gaps() -> None:
    first, second, third = tone(0.5), tone(0.25, sample_rate=48_000, channels=2), tone(0.1)
    joined = concat([first, second, third])
    assert (joined.sample_rate, joined.channels) == (24_000, 1)
    assert joined.frame_count == 12_000 + 6_000 + 2_400
    spaced = concat([first, second, third], gap=0.2)
    assert spaced.duration == pytest.approx(0.85 + 2 * 0.2)
    gap = spaced.data[first.frame_count * 2 : (first.frame_count + 4_800) * 2]
    assert gap == bytes(len(gap))
    assert spaced.data[: len(first.data)] == first.data


def test_concat_follows_the_first_clip() -> None:
    joined = concat([tone(0.1, sample_rate=48_000, channels=2), tone(0.1)], gap=0.05)
    assert (joined.sample_rate, joined.channels, joined.frame_count) == (48_000, 2, 12_000)


def test_concat_of_one_is_that_clip() -> None:
    clip = tone(0.1)
    assert concat([clip], gap=1.0) == clip


def test_concat_refuses_nothing_and_negative_gaps() -> None:
    with pytest.raises(ValueError, match="at least one"):
        concat([])
    with pytest.raises(ValueError, match="non-negative"):
        concat([tone(0.1)], gap=-0.1)


def test_tone_is_deterministic_loud_and_uneven() -> None:
    clip = tone(1.0)
    assert clip == tone(1.0)
    assert (clip.sample_rate, clip.channels, clip.frame_count) == (24_000, 1, 24_000)
    assert 8_000 < peak(clip) < 32_767
    windows = [samples(clip)[i : i + 1200] for i in range(0, 24_000, 1200)]
    levels = [math.sqrt(sum(v * v for v in w) / len(w)) for w in windows]
    assert max(levels) > 1.8 * min(levels)  # a wobbling level, like syllables
    assert tone(1.0, freq=330.0) != clip


def test_tone_fills_every_channel() -> None:
    clip = tone(0.05, sample_rate=48_000, channels=2)
    assert clip.frame_count == 2_400
    assert channel(clip, 0) == channel(clip, 1) == samples(tone(0.05, sample_rate=48_000))
    with pytest.raises(ValueError, match="non-negative"):
        tone(-0.5)
