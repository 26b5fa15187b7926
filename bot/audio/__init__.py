"""Audio in and out: whatever Segmind sends, decoded; whatever Discord needs, encoded.

The package's face. Its parts: the shapes and formats (`pcm`), recognising a body (`sniff`),
decoding (`decoding`), rate and channel changes (`convert`), and encoding (`encoding`).
"""

from __future__ import annotations

from bot.audio.convert import concat, resample, to_discord_pcm
from bot.audio.decoding import decode, decode_audio, probe
from bot.audio.encoding import (
    OPUS_BITRATE,
    OPUS_COMPLEXITY,
    encode,
    encode_mp3,
    encode_ogg_opus,
    encode_wav,
    is_ogg_opus,
    to_ogg_opus,
)
from bot.audio.pcm import (
    DISCORD_CHANNELS,
    DISCORD_FRAME_MS,
    DISCORD_SAMPLE_RATE,
    GEMINI_CHANNELS,
    GEMINI_SAMPLE_RATE,
    MAX_DECODED_BYTES,
    MAX_DECODED_RATE,
    Audio,
    AudioFormat,
    Pcm,
)
from bot.audio.sniff import pcm_params, sniff_format

__all__ = [
    "DISCORD_CHANNELS",
    "DISCORD_FRAME_MS",
    "DISCORD_SAMPLE_RATE",
    "GEMINI_CHANNELS",
    "GEMINI_SAMPLE_RATE",
    "MAX_DECODED_BYTES",
    "MAX_DECODED_RATE",
    "OPUS_BITRATE",
    "OPUS_COMPLEXITY",
    "Audio",
    "AudioFormat",
    "Pcm",
    "concat",
    "decode",
    "decode_audio",
    "encode",
    "encode_mp3",
    "encode_ogg_opus",
    "encode_wav",
    "is_ogg_opus",
    "pcm_params",
    "probe",
    "resample",
    "sniff_format",
    "to_discord_pcm",
    "to_ogg_opus",
]
