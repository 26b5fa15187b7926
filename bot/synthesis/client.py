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
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass

import aiohttp
from aiohttp.http_exceptions import PayloadEncodingError
from pydantic import SecretStr
from yarl import URL

from bot import audio as audio_mod
from bot.audio import Audio, AudioFormat
from bot.config import Settings
from bot.errors import (
    AudioDeadlineError,
    AudioError,
    BadAudioError,
    RateLimitedError,
    SegmindConnectionError,
    SegmindError,
    SegmindTimeoutError,
    error_class_for_status,
)
from bot.redaction import Redactor
from bot.speech.request import SpeechRequest
from bot.synthesis import answers
from bot.synthesis.backoff import retry_after_seconds
from bot.synthesis.links import Resolver, UnsafeLinkError, is_loopback_host, pin, system_resolver

__all__ = ["MAX_BODY_BYTES", "CallRecord", "Credits", "SegmindClient", "Timeouts"]

log = logging.getLogger(__name__)

_CONTAINERS = frozenset({AudioFormat.WAV, AudioFormat.OGG, AudioFormat.MP3})

#: Two minutes of 24 kHz mono WAV is under 6 MB; anything far larger is not a speech clip.
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long one call may take: the scheduler owns every retry, so there is no loop here.

    `request_timeout` is one hard deadline for the whole call: request, body, the audio
    link's fetch and the decoding check all end by it.
    """

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
        resolve: Resolver = system_resolver,
    ) -> None:
        self._session = session
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        #: Every text from upstream passes through this before it is kept or shortened.
        self._redact = Redactor([self._key.get_secret_value()])
        self._base_url = base_url.rstrip("/")
        #: The only origin the API key is ever sent to.
        self._origin = URL(self._base_url).origin()
        # Audio links on loopback are fine only when the API itself is (tests, the fake).
        self._loopback_links = is_loopback_host(URL(self._base_url).host)
        self._resolve = resolve
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
        limit = self.timeouts.request_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        started = self._clock()
        status: int | None = None
        request_id: str | None = None
        cost: float | None = None
        result: Audio | None = None
        error: SegmindError | None = None
        try:
            # One deadline for everything below: no step gets a fresh timeout of its own.
            async with asyncio.timeout_at(deadline):
                async with self._session.post(
                    self.endpoint,
                    json=request.payload(),
                    headers=self._headers(self.endpoint),
                    timeout=self._timeout(deadline),
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
                result = await self._audio_from_body(body, content_type, deadline)
            return result
        except SegmindError as exc:
            exc.request_id = exc.request_id or request_id
            error = exc
            raise
        except TimeoutError:
            error = SegmindTimeoutError(
                f"no complete answer within {limit:.0f} s", request_id=request_id
            )
            raise error from None
        except aiohttp.ClientError as exc:
            error = self._client_error(exc, request_id)
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

    def _client_error(self, exc: aiohttp.ClientError, request_id: str | None) -> SegmindError:
        """A transport failure, typed: a body that decompresses past aiohttp's cap (or will not
        decompress) is a bad answer, not a connection problem worth retrying."""
        if _encoding_failure(exc):
            return BadAudioError(
                "an answer whose compressed body expands past the size limit or does not "
                "decompress",
                request_id=request_id,
            )
        return SegmindConnectionError(
            self._redact(f"{type(exc).__name__}: {exc}"), request_id=request_id
        )

    def _timeout(self, deadline: float) -> aiohttp.ClientTimeout:
        """aiohttp's own timeout for one request, ending no later than the call's deadline."""
        left = max(0.001, deadline - asyncio.get_running_loop().time())
        return aiohttp.ClientTimeout(
            total=left, sock_connect=min(left, self.timeouts.connect_timeout)
        )

    def _headers(self, url: str) -> dict[str, str]:
        """Headers with the API key, for a URL on the configured origin and nowhere else."""
        if URL(url).origin() != self._origin:
            raise SegmindConnectionError("refusing to send the API key outside SEGMIND_BASE_URL")
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
        """The status decides the error; the body only adds a message, and a body that cannot
        be read or parsed (deeply nested JSON, a broken encoding) adds none."""
        cls = error_class_for_status(response.status)
        retry_after = None
        if cls is RateLimitedError:
            retry_after = retry_after_seconds(response.headers, now=self._wall_clock())
        try:
            raw = await response.content.read(64 * 1024)
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
        error = cls(
            status=response.status,
            upstream_message=self._message(raw, response.headers.get("Content-Type")),
            request_id=response.headers.get("x-request-id"),
        )
        if isinstance(error, RateLimitedError):
            error.retry_after = retry_after
        return error

    def _message(self, raw: bytes, content_type: str | None) -> str | None:
        """What upstream said, redacted before it is shortened; None if nothing usable."""
        try:
            return answers.upstream_message(raw, content_type, self._redact) or None
        except Exception:  # a hostile body must never turn into an untyped error
            return None

    async def _audio_from_body(
        self, body: bytes, content_type: str | None, deadline: float
    ) -> Audio:
        media_type = answers.media_type(content_type)
        linked = False
        if audio_mod.sniff_format(None, body[:64]) in _CONTAINERS:
            content_type = None  # Unmistakable audio, whatever the label said.
        elif media_type == "application/json" or (
            media_type in ("", "text/plain") and body.lstrip()[:1] in (b"{", b"[")
        ):
            body, content_type, linked = await self._audio_from_json(body, deadline)
        fmt = audio_mod.sniff_format(content_type, body[:64])
        if fmt is None:
            shown = answers.media_type(content_type) or "no content type"
            # What a link returned is never echoed: it may be any page the link reached.
            said = None if linked else self._message(body, content_type)
            raise BadAudioError(
                f"a success answer with {shown} and {len(body):,} bytes", upstream_message=said
            )
        rate, channels = audio_mod.pcm_params(content_type)
        return await self._probe(body, fmt, rate, channels, deadline)

    async def _probe(
        self, body: bytes, fmt: AudioFormat, rate: int, channels: int, deadline: float
    ) -> Audio:
        loop = asyncio.get_running_loop()
        # The thread cannot be killed: it checks this deadline between packets and stops.
        until = time.monotonic() + max(0.0, deadline - loop.time())
        try:
            return await loop.run_in_executor(
                self._executor,
                lambda: audio_mod.probe(
                    body,
                    fmt,
                    sample_rate=rate,
                    channels=channels,
                    deadline=until,
                    # Ogg Opus is passed on as it is: its samples would only be thrown away.
                    keep_samples=not audio_mod.is_ogg_opus(body),
                ),
            )
        except AudioDeadlineError:
            raise TimeoutError from None
        except AudioError as exc:
            raise BadAudioError(f"undecodable {fmt.value} audio ({exc})") from None

    async def _audio_from_json(
        self, body: bytes, deadline: float
    ) -> tuple[bytes, str | None, bool]:
        """The audio a JSON answer carries: (bytes, content type, whether it came from a link)."""
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadAudioError("a JSON answer that does not parse") from None
        found = answers.find_audio_value(document)
        if found is None:
            raise BadAudioError(
                "a JSON answer without audio",
                upstream_message=self._message(body, "application/json"),
            )
        if found.startswith(("http://", "https://")):
            data, content_type = await self._fetch_url(found, deadline)
            return data, content_type, True
        match = answers.DATA_URI.match(found)
        content_type = match.group("type") if match else None
        encoded = found[match.end() :] if match else found
        try:
            return base64.b64decode(answers.pad_base64(encoded), validate=True), content_type, False
        except (binascii.Error, ValueError):
            raise BadAudioError("a JSON answer whose audio is not valid base64") from None

    async def _fetch_url(self, url: str, deadline: float) -> tuple[bytes, str | None]:
        """Fetch an audio link: public http(s) hosts only, pinned to the checked address, no
        redirects, never the API key, and nothing it returns copied into errors."""
        try:
            target = await pin(url, allow_loopback=self._loopback_links, resolve=self._resolve)
        except UnsafeLinkError as exc:
            raise BadAudioError(f"refused the audio link: {exc}") from None
        headers = {"Host": target.host, "Accept": "audio/*"}
        try:
            async with self._session.get(
                target.url,
                headers=headers,
                timeout=self._timeout(deadline),
                allow_redirects=False,
                server_hostname=target.server_hostname,
            ) as response:
                if response.status != 200:
                    raise BadAudioError(f"the audio link answered HTTP {response.status}")
                return await _read_capped(response), response.headers.get("Content-Type")
        except aiohttp.ClientError as exc:
            if _encoding_failure(exc):
                raise BadAudioError(
                    "the audio link's body does not decompress within the limit"
                ) from None
            raise BadAudioError(f"the audio link failed ({type(exc).__name__})") from None

    async def get_credits(self) -> Credits:
        """The account's balance; free of charge, so it doubles as a key check."""
        url = f"{self._base_url}/get-user-credits"
        deadline = asyncio.get_running_loop().time() + self.timeouts.request_timeout
        try:
            async with asyncio.timeout_at(deadline):
                # Never follow a redirect: it would carry the key to wherever it points.
                async with self._session.get(
                    url,
                    headers=self._headers(url),
                    timeout=self._timeout(deadline),
                    allow_redirects=False,
                ) as response:
                    if response.status != 200:
                        raise await self._status_error(response)
                    raw = await _read_capped(response)
        except TimeoutError:
            raise SegmindTimeoutError("the credits check timed out") from None
        except aiohttp.ClientError as exc:
            raise self._client_error(exc, None) from None
        try:
            document = json.loads(raw)
            credits = Credits(
                credits=float(document.get("credits") or 0),
                free_credits=float(document.get("free-credits") or 0),
            )
        except (ValueError, TypeError, AttributeError, RecursionError):
            raise BadAudioError("the credits answer did not parse") from None
        self.remaining_credits = credits.total
        return credits


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


def _float_header(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _encoding_failure(exc: BaseException) -> bool:
    """Whether aiohttp failed while decompressing a body (its size cap, or bad data)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PayloadEncodingError):
            return True
        current = current.__cause__ or current.__context__
    return False
