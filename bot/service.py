"""What `/speak` and its siblings share: validation with server defaults, queueing, rendering.

Cogs translate Discord to these calls and back; the logic (and later the cache, member
defaults and usage accounting) lives here, with no Discord types.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import Executor
from dataclasses import dataclass

from bot import audio as audio_mod
from bot.audio import Audio
from bot.config import Settings
from bot.scheduler import Scheduler, Ticket
from bot.speech import SpeechRequest, build_request


@dataclass(frozen=True, slots=True)
class Clip:
    """Audio ready to post: Ogg Opus, which Discord plays inline."""

    data: bytes
    duration: float
    filename: str


class SpeechService:
    def __init__(
        self, settings: Settings, scheduler: Scheduler, *, executor: Executor | None = None
    ) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self._executor = executor

    def prepare(
        self,
        text: str,
        *,
        voice: str | None = None,
        voice_2: str | None = None,
        temperature: float | None = None,
        style: str | None = None,
    ) -> SpeechRequest:
        """Validate a member's input against this bot's limits; raises InvalidRequestError."""
        return build_request(
            text,
            voice=voice,
            voice_2=voice_2,
            temperature=temperature,
            style=style,
            max_length=self.settings.max_text_length,
            default_voice=self.settings.default_voice,
            default_temperature=self.settings.default_temperature,
        )

    def submit(self, user_id: int, request: SpeechRequest) -> Ticket:
        """Queue a request; raises at once (cooldown, full queue, halted) so nothing is spent."""
        return self.scheduler.submit(user_id, request)

    async def render(self, audio: Audio, request: SpeechRequest) -> Clip:
        """Encode for chat off the event loop: transcoding takes tens of milliseconds."""
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(self._executor, _to_ogg_opus, audio)
        return Clip(data=data, duration=audio.duration, filename=clip_filename(request))


def _to_ogg_opus(audio: Audio) -> bytes:
    return audio_mod.encode_ogg_opus(audio_mod.decode_audio(audio))


_UNSAFE = re.compile(r"[^a-z0-9]+")


def clip_filename(request: SpeechRequest) -> str:
    """A readable attachment name from the voice and the first words, safe on every OS."""
    words = _UNSAFE.sub("-", request.text.casefold())[:40].strip("-")
    return f"{request.voice.casefold()}-{words or 'speech'}.ogg"
