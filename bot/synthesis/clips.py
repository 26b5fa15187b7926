"""Turning made audio into what Discord plays or posts: one Ogg Opus file, or a voice message.
Split from `bot.synthesis.service`, which re-exports `Clip` and `clip_filename`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot import audio as audio_mod
from bot.audio import Audio
from bot.audio.voice_message import VoiceMessage, make_voice_message
from bot.speech.request import SpeechRequest

__all__ = ["Clip", "clip_filename", "join_to_ogg_opus", "voice_message_of"]


@dataclass(frozen=True, slots=True)
class Clip:
    """Audio ready to post: Ogg Opus, which Discord plays inline."""

    data: bytes
    duration: float
    filename: str


def voice_message_of(audios: list[Audio]) -> VoiceMessage:
    if len(audios) == 1:
        return make_voice_message(audios[0])
    joined = audio_mod.concat([audio_mod.decode_audio(audio) for audio in audios])
    return make_voice_message(
        audio_mod.probe(audio_mod.encode_wav(joined), audio_mod.AudioFormat.WAV)
    )


def join_to_ogg_opus(audios: list[Audio]) -> bytes:
    pcms = [audio_mod.decode_audio(audio) for audio in audios]
    return audio_mod.encode_ogg_opus(pcms[0] if len(pcms) == 1 else audio_mod.concat(pcms))


_UNSAFE = re.compile(r"[^a-z0-9]+")


def clip_filename(request: SpeechRequest) -> str:
    """A readable attachment name from the voice and the first words, safe on every OS."""
    words = _UNSAFE.sub("-", request.text.casefold())[:40].strip("-")
    return f"{request.voice.casefold()}-{words or 'speech'}.ogg"
