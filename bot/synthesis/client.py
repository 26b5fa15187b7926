"""The client for Gemini 2.5 Flash TTS on Segmind: validated requests in, one `Audio` out.

Everything the upstream API is unsure about (response shape, reset headers) is handled here, so
the rest of the bot deals with one audio value and one family of typed errors.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import SecretStr

from bot import audio as audio_mod
from bot.audio import Audio, AudioFormat
from bot.config import Settings
from bot.errors import (
    AudioError,
    BadAudioError,
    RateLimitedError,
    SegmindConnectionError,
    SegmindError,
    SegmindTimeoutError,
    error_class_for_status,
)
from bot.speech.request import SpeechRequest
from bot.synthesis.backoff import retry_after_seconds

__all__ = ["MAX_BODY_BYTES", "CallRecord", "Credits", "SegmindClient", "Timeouts"]

log = logging.getLogger(__name__)

#: Two minutes of 24 kHz mono WAV is under 6 MB; anything far larger is not a speech clip.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Keys under which a JSON answer might carry its audio, most likely first.
_AUDIO_KEYS = (
    "audio",
    "audio_base64",
    "audioContent",
    "audio_content",
    "audio_url",
    "output",
    "data",
    "result",
    "url",
    "file",
)
_CONTAINERS = frozenset({AudioFormat.WAV, AudioFormat.OGG, AudioFormat.MP3})
_MESSAGE_KEYS = ("error", "message", "detail", "msg", "errors")
_DATA_URI = re.compile(r"^data:(?P<type>[\w/.+-]+)?(?:;[^,]*)?;base64,", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long one call may take: the scheduler owns every retry, so there is no loop here."""

    request_timeout: float = 90.0
    connect_timeout: float = 10.0
    #: v2: how long an accepted job may take before polling stops (results live an hour).
    job_timeout: float = 600.0
    #: v2: the first wait between polls, growing to `last_poll` (Segmind's SDK polls each 1 s).
    first_poll: float = 1.0
    last_poll: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Timeouts:
        return cls(
            request_timeout=settings.request_timeout,
            connect_timeout=settings.connect_timeout,
            job_timeout=settings.segmind_job_timeout,
        )


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One HTTP attempt, for usage accounting: every attempt may cost money."""

    status: int | None
    elapsed: float
    error: str | None
    request_id: str | None
    cost: float | None
    audio_seconds: float | None


@dataclass(frozen=True, slots=True)
class Credits:
    credits: float
    free_credits: float

    @property
    def total(self) -> float:
        return self.credits + self.free_credits


class SegmindClient:
    """Speaks to one Segmind account through a shared `aiohttp.ClientSession` it does not own."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: SecretStr | str,
        base_url: str = "https://api.segmind.com/v1",
        model: str = "gemini-2.5-flash-tts",
        timeouts: Timeouts | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
    ) -> None:
        self._session = session
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._base_url = base_url.rstrip("/")
        self._model = model.strip("/")
        self.timeouts = timeouts or Timeouts()
        self._clock = clock
        self._wall_clock = wall_clock
        self._executor = executor
        self._listeners: list[Callable[[CallRecord], None]] = []
        #: The balance the last answer reported, if it did (`x-remaining-credits`).
        self.remaining_credits: float | None = None

    @classmethod
    def from_settings(cls, session: aiohttp.ClientSession, settings: Settings) -> SegmindClient:
        """The client for SEGMIND_API: v1 (one synchronous call) or v2 (submit and poll)."""
        if settings.segmind_api_key is None:
            raise ValueError("SEGMIND_API_KEY is not set")
        if settings.segmind_api == "v2" and cls is SegmindClient:
            from bot.synthesis.client_v2 import SegmindV2Client  # v2 builds on this module

            cls = SegmindV2Client
        return cls(
            session,
            api_key=settings.segmind_api_key,
            base_url=settings.segmind_base_url,
            model=settings.segmind_model,
            timeouts=Timeouts.from_settings(settings),
        )

    @property
    def endpoint(self) -> str:
        return f"{self._base_url}/{self._model}"

    def add_listener(self, listener: Callable[[CallRecord], None]) -> None:
        """Be told of every HTTP attempt (usage and cost accounting)."""
        self._listeners.append(listener)

    async def synthesize(self, request: SpeechRequest) -> Audio:
        """Make exactly one attempt and raise every failure as a typed `SegmindError` (a 429
        with its `retry_after`): the scheduler, which paces every caller under one rate
        limit, owns every retry, for Discord and the terminal alike."""
        return await self._attempt(request)

    async def _attempt(self, request: SpeechRequest) -> Audio:
        timeout = aiohttp.ClientTimeout(
            total=self.timeouts.request_timeout, sock_connect=self.timeouts.connect_timeout
        )
        started = self._clock()
        status: int | None = None
        request_id: str | None = None
        cost: float | None = None
        result: Audio | None = None
        error: SegmindError | None = None
        try:
            async with self._session.post(
                self.endpoint,
                json=request.payload(),
                headers=self._headers(),
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                request_id = response.headers.get("x-request-id")
                cost = _float_header(response.headers, "x-cost")
                self._note_credits(response.headers)
                if not 200 <= status < 300:
                    raise await self._status_error(response)
                body = await _read_capped(response)
                content_type = response.headers.get("Content-Type")
            result = await self._audio_from_body(body, content_type, timeout)
            return result
        except SegmindError as exc:
            exc.request_id = exc.request_id or request_id
            error = exc
            raise
        except TimeoutError:
            error = SegmindTimeoutError(
                f"no complete answer within {timeout.total:.0f} s", request_id=request_id
            )
            raise error from None
        except aiohttp.ClientError as exc:
            error = SegmindConnectionError(
                self._redact(f"{type(exc).__name__}: {exc}"), request_id=request_id
            )
            raise error from None
        finally:
            self._emit(
                CallRecord(
                    status=status,
                    elapsed=self._clock() - started,
                    error=type(error).__name__ if error else None,
                    request_id=request_id,
                    cost=cost,
                    audio_seconds=result.duration if result else None,
                )
            )

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self._key.get_secret_value(), "Accept": "audio/*, application/json"}

    def _emit(self, record: CallRecord) -> None:
        for listener in self._listeners:
            try:
                listener(record)
            except Exception:
                log.exception("A call listener failed")

    def _note_credits(self, headers: Mapping[str, str]) -> None:
        credits = _float_header(headers, "x-remaining-credits")
        if credits is not None:
            self.remaining_credits = credits

    async def _status_error(self, response: aiohttp.ClientResponse) -> SegmindError:
        try:
            raw = await response.content.read(64 * 1024)
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
        message = self._redact(_upstream_message(raw, response.headers.get("Content-Type")))
        cls = error_class_for_status(response.status)
        error = cls(
            status=response.status,
            upstream_message=message or None,
            request_id=response.headers.get("x-request-id"),
        )
        if isinstance(error, RateLimitedError):
            error.retry_after = retry_after_seconds(response.headers, now=self._wall_clock())
        return error

    async def _audio_from_body(
        self, body: bytes, content_type: str | None, limits: aiohttp.ClientTimeout
    ) -> Audio:
        media_type = _media_type(content_type)
        if audio_mod.sniff_format(None, body[:64]) in _CONTAINERS:
            content_type = None  # Unmistakable audio, whatever the label said.
        elif media_type == "application/json" or (
            media_type in ("", "text/plain") and body.lstrip()[:1] in (b"{", b"[")
        ):
            body, content_type = await self._audio_from_json(body, limits)
        fmt = audio_mod.sniff_format(content_type, body[:64])
        if fmt is None:
            shown = media_type or "no content type"
            raise BadAudioError(
                f"a success answer with {shown} and {len(body):,} bytes",
                upstream_message=self._redact(_upstream_message(body, content_type)) or None,
            )
        rate, channels = audio_mod.pcm_params(content_type)
        return await self._probe(body, fmt, rate, channels)

    async def _probe(self, body: bytes, fmt: AudioFormat, rate: int, channels: int) -> Audio:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor,
                lambda: audio_mod.probe(body, fmt, sample_rate=rate, channels=channels),
            )
        except AudioError as exc:
            raise BadAudioError(f"undecodable {fmt.value} audio ({exc})") from None

    async def _audio_from_json(
        self, body: bytes, limits: aiohttp.ClientTimeout
    ) -> tuple[bytes, str | None]:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadAudioError("a JSON answer that does not parse") from None
        found = _find_audio_value(document)
        if found is None:
            raise BadAudioError(
                "a JSON answer without audio",
                upstream_message=self._redact(_upstream_message(body, "application/json")) or None,
            )
        if found.startswith(("http://", "https://")):
            return await self._fetch_url(found, limits)
        match = _DATA_URI.match(found)
        content_type = match.group("type") if match else None
        encoded = found[match.end() :] if match else found
        try:
            return base64.b64decode(_pad(encoded), validate=True), content_type
        except (binascii.Error, ValueError):
            raise BadAudioError("a JSON answer whose audio is not valid base64") from None

    async def _fetch_url(self, url: str, limits: aiohttp.ClientTimeout) -> tuple[bytes, str | None]:
        # Never send the API key here: result URLs are usually pre-signed storage links.
        try:
            async with self._session.get(url, timeout=limits) as response:
                if response.status != 200:
                    raise BadAudioError(f"the audio link answered HTTP {response.status}")
                return await _read_capped(response), response.headers.get("Content-Type")
        except TimeoutError:
            raise BadAudioError("the audio link timed out") from None
        except aiohttp.ClientError as exc:
            raise BadAudioError(f"the audio link failed ({type(exc).__name__})") from None

    async def get_credits(self) -> Credits:
        """The account's balance; free of charge, so it doubles as a key check."""
        timeout = aiohttp.ClientTimeout(
            total=self.timeouts.request_timeout, sock_connect=self.timeouts.connect_timeout
        )
        try:
            async with self._session.get(
                f"{self._base_url}/get-user-credits", headers=self._headers(), timeout=timeout
            ) as response:
                if response.status != 200:
                    raise await self._status_error(response)
                raw = await _read_capped(response)
        except TimeoutError:
            raise SegmindTimeoutError("the credits check timed out") from None
        except aiohttp.ClientError as exc:
            raise SegmindConnectionError(self._redact(type(exc).__name__)) from None
        try:
            document = json.loads(raw)
            credits = Credits(
                credits=float(document.get("credits") or 0),
                free_credits=float(document.get("free-credits") or 0),
            )
        except (ValueError, TypeError, AttributeError):
            raise BadAudioError("the credits answer did not parse") from None
        self.remaining_credits = credits.total
        return credits

    def _redact(self, text: str) -> str:
        secret = self._key.get_secret_value()
        return text.replace(secret, "[redacted]") if secret else text


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    declared = response.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise BadAudioError(f"an answer of {declared:,} bytes, too large for a speech clip")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadAudioError("an answer too large for a speech clip")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _float_header(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _pad(encoded: str) -> str:
    encoded = "".join(encoded.split())
    return encoded + "=" * (-len(encoded) % 4)


def _find_audio_value(document: Any, depth: int = 0) -> str | None:
    """The first string under a likely audio key, searching nested objects a few levels deep."""
    if depth > 3:
        return None
    if isinstance(document, list):
        for item in document[:5]:
            found = _find_audio_value(item, depth + 1)
            if found:
                return found
        return None
    if isinstance(document, str):
        return document if len(document) > 16 else None
    if not isinstance(document, dict):
        return None
    for key in _AUDIO_KEYS:
        if key in document:
            found = _find_audio_value(document[key], depth + 1)
            if found:
                return found
    return None


def _upstream_message(raw: bytes, content_type: str | None) -> str:
    """A short, printable summary of an error body: its message field, or its first words."""
    if not raw:
        return ""
    media_type = _media_type(content_type)
    text = raw.decode("utf-8", errors="replace").strip()
    if media_type == "application/json" or text[:1] in "{[":
        try:
            document = json.loads(text)
        except ValueError:
            pass
        else:
            message = _message_from_json(document)
            if message:
                return _shorten(message)
    if media_type == "text/html" or text[:1] == "<":
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        return "an HTML page" + (f" titled “{_shorten(title.group(1), 80)}”" if title else "")
    if media_type.startswith(("audio/", "application/octet-stream")):
        return ""
    return _shorten(text)


def _message_from_json(document: Any) -> str | None:
    if isinstance(document, str):
        return document
    if isinstance(document, list) and document:
        return _message_from_json(document[0])
    if isinstance(document, dict):
        for key in _MESSAGE_KEYS:
            if key in document:
                found = _message_from_json(document[key])
                if found:
                    return found
    return None


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
