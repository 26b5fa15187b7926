"""Audio built to hurt: decompression bombs, many channels, decoding past a deadline.

Issue 11: a 219 KB eight-channel Opus answer decoded to 1.34 GB, because the cap was in
seconds and channels were kept. The budget is now in decoded bytes, with channels folded to
mono as they stream, and decoding stops at the call's deadline.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from bot.audio import MAX_DECODED_BYTES, AudioFormat, Pcm, decode, encode_wav, probe
from bot.errors import AudioDeadlineError, AudioError
from tests.hostile import opus_bomb
from tests.signals import tone

OGG = AudioFormat.OGG


def test_the_eight_channel_bomb_is_refused_from_its_claimed_length() -> None:
    bomb = opus_bomb()  # 1,745 s of eight channels: 1.34 GB of PCM as it used to decode
    assert len(bomb) < 250_000
    with pytest.raises(AudioError, match="budget"):
        decode(bomb, OGG)


def test_a_bomb_that_lies_about_its_length_stops_at_the_byte_budget() -> None:
    # Every page claims 1 s, so only the running count of decoded bytes can stop it.
    bomb = opus_bomb(1745.0, claim_seconds=1.0)
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match="MiB"):
            decode(bomb, OGG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Folded to mono as it streams: the samples held never exceed the budget by much.
    assert peak < MAX_DECODED_BYTES * 1.2


def test_channels_are_folded_to_mono_so_eight_cost_what_one_does() -> None:
    pcm = decode(opus_bomb(2.0, channels=8), OGG)
    assert (pcm.channels, pcm.sample_rate) == (1, 48_000)
    assert len(pcm.data) == pytest.approx(2.0 * 48_000 * 2, rel=0.05)


def test_the_longest_real_answer_still_decodes() -> None:
    # Gemini answers at most about 655 s of 24 kHz mono; as Opus it decodes at 48 kHz.
    seconds = 655.0
    assert probe(opus_bomb(seconds, channels=1), OGG).duration == pytest.approx(seconds, abs=0.1)
    wav = encode_wav(Pcm.silence(seconds))
    assert probe(wav, AudioFormat.WAV).duration == pytest.approx(seconds)


def test_decoding_stops_at_the_deadline_with_its_own_error() -> None:
    data = encode_wav(tone(0.5))
    with pytest.raises(AudioDeadlineError):
        decode(data, AudioFormat.WAV, deadline=time.monotonic() - 1)
    assert decode(data, AudioFormat.WAV, deadline=time.monotonic() + 60).duration == 0.5
