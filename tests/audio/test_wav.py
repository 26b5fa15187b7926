"""Decoding made cheap without changing a sample: Gemini's own WAV (16-bit mono PCM) taken as it
is, and other containers' frames converted in batches rather than one by one."""

from __future__ import annotations

import struct
import time

import av
import pytest

from bot.audio import (
    AudioFormat,
    Pcm,
    decode,
    encode,
    encode_mp3,
    encode_ogg_opus,
    encode_wav,
    probe,
    resample,
    to_ogg_opus,
)
from bot.audio import decoding as decoding_mod
from bot.audio.pcm import frames
from bot.errors import AudioDeadlineError, AudioError
from tests.signals import tone

WAV = AudioFormat.WAV


def wav_with(
    samples: bytes, *, rate: int = 24_000, size: int | None = None, extra: bytes = b""
) -> bytes:
    """A hand-made WAV: `extra` chunks before the data, and a data size that may lie."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    data_size = len(samples) if size is None else size
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + extra
    body += b"data" + struct.pack("<I", data_size) + samples
    return b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body


def test_a_plain_wavs_samples_are_a_view_of_the_body_not_a_copy() -> None:
    pcm = tone(1.0)
    wav = encode_wav(pcm)
    checked = probe(wav, WAV)
    assert checked.decoded is not None
    assert checked.decoded.is_view
    assert isinstance(checked.decoded.samples, memoryview)
    assert checked.decoded.samples.obj is wav  # the answer's own bytes, not a copy of them
    assert checked.decoded == pcm
    # Rate and channels already right for Opus: encoded straight from the view, as from bytes.
    assert resample(checked.decoded, 24_000, 1) is checked.decoded
    assert all(isinstance(frame, av.AudioFrame) for frame in frames(checked.decoded))
    from_view, from_bytes = to_ogg_opus(checked).data, encode_ogg_opus(pcm)
    assert decode(from_view, AudioFormat.OGG) == decode(from_bytes, AudioFormat.OGG)
    assert encode(checked.decoded, AudioFormat.PCM) == pcm.data  # bytes where bytes are asked


def test_decoded_samples_are_gathered_in_one_buffer_not_joined_from_pieces() -> None:
    original = tone(2.0)
    checked = probe(encode_mp3(original), AudioFormat.MP3)
    assert checked.decoded is not None
    assert isinstance(checked.decoded.samples, memoryview)
    assert isinstance(checked.decoded.samples.obj, bytearray)  # the one buffer decoded into
    assert checked.decoded.samples.readonly
    assert abs(checked.decoded.frame_count - original.frame_count) <= 48  # LAME's own slack


def test_samples_held_as_a_view_must_be_read_only_bytes() -> None:
    with pytest.raises(ValueError, match="read-only"):
        Pcm(memoryview(bytearray(4)), 24_000, 1)
    with pytest.raises(ValueError, match="read-only"):
        Pcm(memoryview(bytes(4)).cast("h"), 24_000, 1)
    assert Pcm(memoryview(bytes(4)), 24_000, 1).data == bytes(4)


def test_mono_wav_samples_are_the_files_own_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    pcm = tone(0.5)
    wav = encode_wav(pcm)
    assert decoding_mod._plain_wav(wav, None) == (44, 44 + len(pcm.data), 24_000)
    assert decode(encode_wav(pcm), WAV) == pcm
    # The same answer the general (FFmpeg) path gives, which it no longer has to walk.
    general = decoding_mod._decode_container(encode_wav(pcm), WAV, None)
    monkeypatch.setattr(decoding_mod, "_plain_wav", lambda data, deadline: None)
    assert decoding_mod._decode_container(encode_wav(pcm), WAV, None) == general


def test_chunks_before_the_data_and_odd_padding_are_skipped() -> None:
    samples = tone(0.1).data
    odd = b"LIST" + struct.pack("<I", 3) + b"abc\0"  # padded to an even length
    assert decode(wav_with(samples, extra=odd), WAV).data == samples


def test_a_streamed_or_lying_data_size_reads_what_is_there() -> None:
    samples = tone(0.1).data
    assert decode(wav_with(samples, size=0xFFFFFFFF), WAV).data == samples
    # An odd trailing byte is not half a sample.
    assert decode(wav_with(samples + b"\x01", size=0xFFFFFFFF), WAV).data == samples


def test_other_wavs_take_the_general_path_with_its_rules() -> None:
    two = encode_wav(Pcm(bytes(len(tone(0.2).data) * 2), 24_000, 2))
    assert decoding_mod._plain_wav(two, None) is None
    folded = decode(two, WAV)
    assert folded.channels == 1
    assert folded.duration == pytest.approx(0.2)
    high = decode(encode_wav(Pcm(bytes(96_000 * 2 // 10), 96_000, 1)), WAV)
    assert high.sample_rate == 48_000  # capped, as before
    with pytest.raises(AudioError):
        decode(wav_with(b""), WAV)


def test_the_deadline_still_holds() -> None:
    data = encode_wav(tone(0.5))
    with pytest.raises(AudioDeadlineError):
        decode(data, WAV, deadline=time.monotonic() - 1)
    assert probe(data, WAV, keep_samples=False).duration == pytest.approx(0.5)
    assert probe(data, WAV, keep_samples=False).decoded is None


@pytest.mark.parametrize("fmt", [AudioFormat.MP3, AudioFormat.OGG])
def test_frames_converted_in_batches_give_the_samples_frame_by_frame_does(
    fmt: AudioFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encode(tone(3.0), fmt)
    batched = decode(data, fmt)
    monkeypatch.setattr(decoding_mod, "_BATCH_BYTES", 1)  # every frame on its own, as before
    assert decode(data, fmt) == batched
    assert batched.duration == pytest.approx(3.0, abs=0.06)
