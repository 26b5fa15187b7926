"""Voice messages: the re-encoded file and its waveform, measured on real audio."""

from __future__ import annotations

import base64
from array import array

import pytest

from bot import audio
from bot.audio import AudioFormat, Pcm
from bot.audio.voice_message import (
    MAX_WAVEFORM_POINTS,
    VOICE_MESSAGE_BITRATE,
    make_voice_message,
    waveform,
)
from tests.signals import tone


def test_the_file_is_mono_48_khz_ogg_opus_of_the_same_length() -> None:
    clip = audio.probe(audio.encode_ogg_opus(tone(3.0)), AudioFormat.OGG)
    message = make_voice_message(clip)
    assert audio.is_ogg_opus(message.data)
    decoded = audio.decode(message.data, AudioFormat.OGG)
    assert decoded.channels == 1
    assert decoded.duration == pytest.approx(3.0, abs=0.02)
    assert message.duration == pytest.approx(3.0, abs=0.02)
    assert message.data[28:36] == b"OpusHead"
    assert int.from_bytes(message.data[40:44], "little") == 48_000  # Input rate in OpusHead.
    # About 32 kbps, as Discord's clients send: far smaller than the 48 kbps clip.
    assert len(message.data) * 8 / 3.0 < 1.3 * VOICE_MESSAGE_BITRATE


def test_one_point_per_100_ms_up_to_256_with_the_loudest_at_255() -> None:
    short = waveform(tone(3.0))
    assert len(short) == 30
    assert max(short) == 255
    long = waveform(tone(60.0))
    assert len(long) == MAX_WAVEFORM_POINTS
    assert len(waveform(tone(0.01))) == 1


def test_the_waveform_follows_the_envelope() -> None:
    loud = tone(1.0)
    silence = Pcm.silence(1.0, loud.sample_rate, 1)
    samples = array("h", loud.data)
    quiet = Pcm(array("h", (s // 4 for s in samples)).tobytes(), loud.sample_rate, 1)
    points = waveform(audio.concat([loud, silence, quiet]))
    assert len(points) == 30
    assert min(points[:10]) > 50  # Speech shows ...
    assert max(points[10:20]) == 0  # ... a pause is flat ...
    assert 0 < max(points[20:]) <= max(points[:10]) / 4 + 1  # ... softer speech sits lower.


def test_the_waveform_field_is_base64_of_the_points() -> None:
    message = make_voice_message(audio.probe(audio.encode_wav(tone(1.0)), AudioFormat.WAV))
    assert len(base64.b64decode(message.waveform)) == 10
