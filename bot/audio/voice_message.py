"""Speech as a Discord voice message: the waveform bubble members tap to play.

Discord's own clients upload Ogg Opus, mono, 48 kHz at about 32 kbps, with the clip's length
and a waveform of at most 256 one-byte points, a point at most every 100 ms. The bot's clips
are Ogg Opus already, but at Gemini's 24 kHz and 48 kbps, so they are re-encoded to match
what the clients send rather than trusting every client to play the bot's variant.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from dataclasses import dataclass, field

from bot.audio.convert import resample
from bot.audio.decoding import decode_audio
from bot.audio.encoding import encode_ogg_opus
from bot.audio.pcm import DISCORD_SAMPLE_RATE, Audio, Pcm

__all__ = [
    "MAX_WAVEFORM_POINTS",
    "POINT_SECONDS",
    "VOICE_MESSAGE_BITRATE",
    "VoiceMessage",
    "make_voice_message",
    "waveform",
]

MAX_WAVEFORM_POINTS = 256
#: Discord draws at most one point per 100 ms: a 3 s clip gets 30 points, not 256.
POINT_SECONDS = 0.1
VOICE_MESSAGE_BITRATE = 32_000
#: Samples looked at per point: every Nth is enough for an envelope, and keeps it fast.
_STRIDE = 4


@dataclass(frozen=True, slots=True)
class VoiceMessage:
    """What the upload needs: the file, its length and its waveform (base64)."""

    data: bytes = field(repr=False)
    duration: float
    waveform: str


def make_voice_message(audio: Audio) -> VoiceMessage:
    """The clip re-encoded as Discord's clients send voice messages, with its waveform.

    CPU work (a decode and an encode): run it off the event loop.
    """
    pcm = resample(decode_audio(audio), DISCORD_SAMPLE_RATE, 1)
    data = encode_ogg_opus(pcm, bitrate=VOICE_MESSAGE_BITRATE, channels=1)
    points = waveform(pcm)
    return VoiceMessage(data, pcm.duration, base64.b64encode(points).decode("ascii"))


def waveform(pcm: Pcm) -> bytes:
    """The clip's loudness over time: one byte per point, the loudest point at 255.

    Each point is the peak of its slice of the clip (mixed to mono), so a word shows as a
    bump and a pause as a dip, as in the clients' own bubbles.
    """
    mono = resample(pcm, pcm.sample_rate, 1) if pcm.channels > 1 else pcm
    samples = array("h")
    samples.frombytes(mono.samples)
    if sys.byteorder == "big":
        samples.byteswap()
    count = len(samples)
    if count == 0:
        return b"\0"
    points = max(1, min(MAX_WAVEFORM_POINTS, math.ceil(mono.duration / POINT_SECONDS)))
    peaks = []
    for n in range(points):
        chunk = samples[n * count // points : (n + 1) * count // points : _STRIDE]
        peaks.append(max(map(abs, chunk), default=0))
    loudest = max(peaks) or 1
    return bytes(min(255, round(255 * peak / loudest)) for peak in peaks)
