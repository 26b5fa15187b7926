"""Hearing a voice before choosing it (`/voices`): one short clip per voice and language, made
once for the whole bot and kept on disk in a folder of its own, beside the audio cache and never
evicted with it. However many members listen, however often the bot restarts, the previews
together cost at most one call per voice and language: 30 calls for each language a member
has heard them in. A member hears them in their Discord language where the bot has a sentence
in it (`preview_language`), else in English.

A preview is the bot's own use: it is made for no member (`BOT_USER`) and in no server, so it
counts against nobody's daily quota and in no server's `/usage server`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bot.audio import is_ogg_opus
from bot.errors import InvalidRequestError
from bot.locales import language_of, message_of
from bot.speech.access import Requester
from bot.speech.request import DEFAULT_TEMPERATURE, SpeechRequest
from bot.speech.voices import get_voice
from bot.synthesis.service import SpeechService

__all__ = [
    "BOT_USER",
    "LANGUAGES",
    "PREVIEW_SENTENCES",
    "Preview",
    "Previews",
    "preview_language",
]

log = logging.getLogger(__name__)

#: Usage records of the bot's own calls carry this member id, which no Discord user has.
BOT_USER = 0

#: The fixed sentence each voice says, by language. A language is a key of the files on disk
#: (`previews/<language>/<Voice>.ogg`), so a later language adds its previews beside these.
#: The languages are the catalogue's (`bot.locales`); a fixed sentence each, never a member's
#: words, so each language's 30 clips are made once for everyone.
PREVIEW_SENTENCES: dict[str, str] = {
    "en": "Hello, I'm {name}. This is how I sound when I read your messages aloud.",
    "de": "Hallo, ich bin {name}. So klinge ich, wenn ich deine Nachrichten vorlese.",
    "fr": "Bonjour, je suis {name}. Voici ma voix quand je lis tes messages à voix haute.",
    "es": "Hola, soy {name}. Así sueno cuando leo tus mensajes en voz alta.",
    "pt-BR": "Olá, eu sou {name}. É assim que eu soo quando leio suas mensagens em voz alta.",
    "ja": "こんにちは、{name}です。あなたのメッセージを読み上げるときは、こんな声です。",
}
LANGUAGES = tuple(PREVIEW_SENTENCES)


def preview_language(locale: str | None) -> str:
    """The previews a member with this Discord locale hears: their language's, else English."""
    language = language_of(locale)
    return language if language in PREVIEW_SENTENCES else "en"


@dataclass(frozen=True, slots=True)
class Preview:
    """A voice saying the fixed sentence, as Ogg Opus ready to post."""

    voice: str
    language: str
    data: bytes

    @property
    def filename(self) -> str:
        return f"preview-{self.voice.casefold()}-{self.language}.ogg"


class Previews:
    """The previews on disk, made on first request; one call at a time per preview, so two
    members asking for the same new voice at once share its one call."""

    def __init__(self, speech: SpeechService, directory: Path) -> None:
        self.speech = speech
        self.directory = directory
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def path(self, voice: str, language: str) -> Path:
        return self.directory / language / f"{voice}.ogg"

    def made(self) -> int:
        """How many previews are on disk (each was one call, once)."""
        return sum(1 for _ in self.directory.glob("*/*.ogg"))

    async def get(self, voice: str, language: str = "en") -> Preview:
        """The preview of `voice`, from disk, or made now (one call) and kept. Raises
        `InvalidRequestError` for a voice or language there is none of, before any call."""
        try:
            name = get_voice(voice).name
        except ValueError as exc:
            raise InvalidRequestError(message_of(exc)) from None
        if language not in PREVIEW_SENTENCES:
            raise InvalidRequestError(f"There are no previews in “{language}” yet.")
        lock = self._locks.setdefault((language, name), asyncio.Lock())
        async with lock:
            path = self.path(name, language)
            data = await asyncio.to_thread(_read, path)
            if data is None:
                data = await self._make(name, language)
                await asyncio.to_thread(_write, path, data)
                log.info("Made the %s preview of %s (%d on disk)", language, name, self.made())
            return Preview(name, language, data)

    async def _make(self, voice: str, language: str) -> bytes:
        request = SpeechRequest(
            text=PREVIEW_SENTENCES[language].format(name=voice),
            voice=voice,
            temperature=DEFAULT_TEMPERATURE,
        )
        # No cooldown and no waiting cap: the bot's own call, paced like any other by the
        # key's rate limit and the fair queue.
        requester = Requester(BOT_USER, None, cooldown=0.0, capped=False)
        stream = await self.speech.stream(requester, [request])
        audios = await stream.collect()
        return (await self.speech.render_many(audios, request)).data


def _read(path: Path) -> bytes | None:
    """The stored preview, or None when there is none (or only a damaged one, made again)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return data if is_ogg_opus(data) else None


def _write(path: Path, data: bytes) -> None:
    """Written beside and renamed: a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)
