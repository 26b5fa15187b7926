"""A local stand-in for Segmind's Gemini 2.5 Flash TTS API.

The real service is slow (about 20 s a call), costs money, rate-limits per key and returns
audio in a shape nobody has confirmed. This server answers like it on 127.0.0.1 only, so
integration tests, benchmarks and manual bot runs can exercise every shape, every error and
every failure mode (slow headers, trickling bodies, dropped connections) deterministically.

Run by hand: ``python -m tests.fake_segmind --shape ogg --latency 2 --rpm 5`` and point the
bot's ``SEGMIND_BASE_URL`` at the printed URL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

from bot.audio import AudioFormat, encode
from tests.fake_segmind_v2 import V2Protocol
from tests.signals import tone

__all__ = [
    "DEFAULT_JSON_KEYS",
    "HOST",
    "PCM_CONTENT_TYPE",
    "TTS_PATH",
    "V2_TTS_PATH",
    "VOICES",
    "FakeSegmind",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "Shape",
    "decode_json_audio",
    "delay",
    "drop",
    "echo_key",
    "rate_limited",
    "shape",
    "slow_body",
    "status",
    "wrong_content",
]

HOST = "127.0.0.1"
TTS_PATH = "/v1/gemini-2.5-flash-tts"
V2_TTS_PATH = "/v2/gemini-2.5-flash-tts"
CREDITS_PATH = "/v1/get-user-credits"
SAMPLE_RATE = 24_000
PCM_CONTENT_TYPE = f"audio/L16; rate={SAMPLE_RATE}; channels=1"

# Copied from the API notes rather than imported from bot.voices, so the double stays an
# independent oracle: a typo in the bot's list must fail against it, not agree with it.
VOICES: frozenset[str] = frozenset(
    {
        *("Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede"),
        *("Callirrhoe", "Autonoe", "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina"),
        *("Erinome", "Algenib", "Rasalgethi", "Laomedeia", "Achernar", "Alnilam", "Schedar"),
        *("Gacrux", "Pulcherrima", "Achird", "Zubenelgenubi", "Vindemiatrix", "Sadachbia"),
        *("Sadaltager", "Sulafat"),
    }
)


class Shape(StrEnum):
    """Every plausible wrapping of the audio, since Segmind's real one is unconfirmed."""

    WAV = "wav"
    MP3 = "mp3"
    OGG = "ogg"
    PCM = "pcm"
    OCTET = "octet"
    JSON_BASE64 = "json_base64"
    JSON_URL = "json_url"

    @property
    def content_type(self) -> str:
        """The Content-Type header this shape is served with."""
        return _CONTENT_TYPES[self]


_CONTENT_TYPES: dict[Shape, str] = {
    Shape.WAV: "audio/wav",
    Shape.MP3: "audio/mpeg",
    Shape.OGG: "audio/ogg",
    Shape.PCM: PCM_CONTENT_TYPE,
    Shape.OCTET: "application/octet-stream",
    Shape.JSON_BASE64: "application/json",
    Shape.JSON_URL: "application/json",
}

# The audio encoding behind each shape; JSON shapes carry (or link to) a WAV file.
_FORMATS: dict[Shape, AudioFormat] = {
    Shape.WAV: AudioFormat.WAV,
    Shape.MP3: AudioFormat.MP3,
    Shape.OGG: AudioFormat.OGG,
    Shape.PCM: AudioFormat.PCM,
    Shape.OCTET: AudioFormat.PCM,
    Shape.JSON_BASE64: AudioFormat.WAV,
    Shape.JSON_URL: AudioFormat.WAV,
}

DEFAULT_JSON_KEYS: dict[Shape, str] = {Shape.JSON_BASE64: "audio", Shape.JSON_URL: "audio_url"}

_DEFAULT_MESSAGES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized: invalid or missing API key",
    403: "Forbidden: insufficient permissions",
    404: "Not found",
    406: "Insufficient credits",
    429: "Rate limit exceeded",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class FaultKind(StrEnum):
    STATUS = "status"
    RATE_LIMITED = "rate_limited"
    DELAY = "delay"
    SLOW_BODY = "slow_body"
    WRONG_CONTENT = "wrong_content"
    DROP = "drop"
    SHAPE = "shape"
    ECHO_KEY = "echo_key"


RateLimitStyle = Literal["seconds", "http-date", "iso", "epoch", "reset-http-date", "none"]


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted misbehaviour, consumed by the next TTS request (build with the helpers).

    ``before`` delays any fault's answer, e.g. ``status(502).delayed(0.2)``.
    """

    kind: FaultKind
    code: int = 200
    body: bytes = b""
    content_type: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    styles: tuple[RateLimitStyle, ...] = ()
    reset_at: datetime | None = None
    remaining: int | None = None
    shape: Shape | None = None
    json_key: str | None = None
    before: float = 0.0
    #: ECHO_KEY: which part of the key the request sent replaces ``{key}`` in ``body``.
    cut: tuple[int, int | None] = (0, None)

    def delayed(self, seconds: float) -> Fault:
        """The same fault, answered only after ``seconds``."""
        return replace(self, before=seconds)


def status(
    code: int,
    message: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    content_type: str = "text/html",
) -> Fault:
    """An error answer: JSON ``{"error": message}``, or ``body`` verbatim (a proxy's HTML page)."""
    if body is None:
        text = message if message is not None else _DEFAULT_MESSAGES.get(code, f"HTTP {code}")
        body = json.dumps({"error": text}).encode()
        content_type = "application/json"
    return Fault(
        FaultKind.STATUS,
        code=code,
        body=body,
        content_type=content_type,
        headers=tuple((headers or {}).items()),
    )


def rate_limited(
    retry_after: float = 1.0,
    *,
    style: RateLimitStyle | tuple[RateLimitStyle, ...] = "seconds",
    reset_at: datetime | None = None,
    remaining: int | None = 0,
    message: str = "Rate limit exceeded",
    headers: Mapping[str, str] | None = None,
) -> Fault:
    """A 429 whose wait is told by the header(s) named in ``style``.

    Styles, combinable as a tuple: ``seconds`` and ``http-date`` → ``Retry-After``;
    ``iso``, ``epoch`` and ``reset-http-date`` → ``x-rate-limit-reset-at-utc``; ``none`` →
    neither. The reset moment is ``reset_at`` if given, else now + ``retry_after`` (computed
    when the fault is served). ``remaining=None`` leaves out ``x-rate-limit-remaining``;
    ``headers`` adds raw ones (e.g. a malformed ``Retry-After``).
    """
    styles = (style,) if isinstance(style, str) else tuple(style)
    return Fault(
        FaultKind.RATE_LIMITED,
        code=429,
        body=json.dumps({"error": message}).encode(),
        content_type="application/json",
        headers=tuple((headers or {}).items()),
        seconds=retry_after,
        styles=styles,
        reset_at=reset_at,
        remaining=remaining,
    )


def delay(seconds: float) -> Fault:
    """Hold the response headers back for ``seconds``, then answer normally (client timeouts)."""
    return Fault(FaultKind.DELAY, seconds=seconds)


def slow_body(seconds: float) -> Fault:
    """Send a normal success's headers at once, then trickle its body over ``seconds``."""
    return Fault(FaultKind.SLOW_BODY, seconds=seconds)


def wrong_content(
    body: bytes,
    content_type: str,
    *,
    code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Fault:
    """A (by default successful) answer whose body is not usable audio: HTML, empty, garbage,
    a JSON answer linking anywhere; ``headers`` adds raw ones (``Content-Encoding: gzip`` on a
    compression bomb: the body is sent as given)."""
    return Fault(
        FaultKind.WRONG_CONTENT,
        code=code,
        body=body,
        content_type=content_type,
        headers=tuple((headers or {}).items()),
    )


def echo_key(
    code: int,
    template: str,
    *,
    start: int = 0,
    stop: int | None = None,
    content_type: str = "application/json",
) -> Fault:
    """An answer that echoes (part of) the key the request sent, as careless upstreams do:
    ``template`` with ``{key}`` replaced by ``key[start:stop]`` (e.g. a JSON error body
    saying ``api_key=SG_4f9c2e71a…``). The test writes the body, so JSON escaping is its own."""
    return Fault(
        FaultKind.ECHO_KEY,
        code=code,
        body=template.encode(),
        content_type=content_type,
        cut=(start, stop),
    )


def drop() -> Fault:
    """Close the TCP connection without answering."""
    return Fault(FaultKind.DROP)


def shape(new_shape: Shape, *, json_key: str | None = None) -> Fault:
    """One normal success served in another shape."""
    return Fault(FaultKind.SHAPE, shape=new_shape, json_key=json_key)


@dataclass(slots=True)
class RecordedRequest:
    """What one TTS request sent, and what it got back (``status`` None: dropped or cut off)."""

    received: float
    headers: dict[str, str]
    body: bytes = b""
    json_body: Any = None
    status: int | None = None
    fault: Fault | None = None


@dataclass(slots=True)
class _Answer:
    """A response decided on but not yet sent, so faults can change how it is delivered."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class FakeSegmind:
    """The fake server; ``async with FakeSegmind() as fake:`` then use ``fake.base_url``.

    Attributes are plain and mutable on purpose (``fake.credits = 0``, ``fake.shape = ...``)
    so a test can change the server's mood between calls.
    """

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        shape: Shape = Shape.WAV,
        json_key: str | None = None,
        seconds_per_char: float = 0.06,
        min_seconds: float = 0.5,
        max_seconds: float = 120.0,
        latency: float = 0.0,
        latency_per_char: float = 0.0,
        credits: float = 100.0,
        cost: float = 0.005,
        rpm_limit: int | None = None,
        rpm_window: float = 60.0,
        max_text_chars: int | None = None,
        port: int = 0,
        slow_body_chunks: int = 10,
        shutdown_timeout: float = 0.25,
    ) -> None:
        self.api_key = api_key
        self.shape = Shape(shape)
        self.json_key = json_key
        self.seconds_per_char = seconds_per_char
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds
        self.latency = latency
        self.latency_per_char = latency_per_char
        self.credits = credits
        self.cost = cost
        self.rpm_limit = rpm_limit
        self.rpm_window = rpm_window
        self.max_text_chars = max_text_chars
        self.slow_body_chunks = max(1, slow_body_chunks)
        self.requests: list[RecordedRequest] = []
        self.rate_limited_count = 0
        self.credit_checks = 0
        self.file_fetches = 0
        self.files: dict[str, bytes] = {}
        #: Extra headers per served file (e.g. ``Content-Encoding`` for a compression bomb).
        self.file_headers: dict[str, dict[str, str]] = {}
        #: Faults for the next audio link fetches (``/files/…``), one each: a delay, a slow
        #: body, a drop, or another answer (``status``, ``wrong_content``).
        self.file_faults: deque[Fault] = deque()
        self._port = port
        self._shutdown_timeout = shutdown_timeout
        self._script: deque[Fault] = deque()
        self._windows: dict[str, deque[float]] = {}
        self._audio_cache: OrderedDict[tuple[float, AudioFormat], bytes] = OrderedDict()
        self._runner: web.AppRunner | None = None
        #: The v2 (submit and poll) side of the same server, sharing its key, faults, credits.
        self.v2 = V2Protocol(self)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port unless one was given)."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post(TTS_PATH, self._handle_tts)
        app.router.add_get(CREDITS_PATH, self._handle_credits)
        self.v2.add_routes(app, V2_TTS_PATH)
        app.router.add_get("/files/{name}", self._handle_file)
        app.router.add_route("*", "/v1", self._handle_not_found)
        app.router.add_route("*", "/v1/{tail:.*}", self._handle_not_found)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        await web.TCPSite(runner, HOST, self._port).start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop listening; in-flight handlers get ``shutdown_timeout`` to finish, then die."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError("FakeSegmind is not running; use start() or async with")
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """What the bot takes as ``SEGMIND_BASE_URL``."""
        return f"{self.root_url}/v1"

    @property
    def tts_url(self) -> str:
        return f"{self.root_url}{TTS_PATH}"

    # -- scripting and inspection ----------------------------------------------------------

    def enqueue(self, *faults: Fault) -> None:
        """Script the next TTS requests, one fault each, in arrival order."""
        self._script.extend(faults)

    @property
    def pending_faults(self) -> int:
        return len(self._script)

    @property
    def tts_calls(self) -> int:
        """TTS requests received, whatever they were answered."""
        return len(self.requests)

    @property
    def successes(self) -> int:
        return sum(1 for r in self.requests if r.status == 200)

    def statuses(self) -> list[int | None]:
        """The status each TTS request got, in order (None: dropped or cut off)."""
        return [r.status for r in self.requests]

    def expected_duration(self, text: str) -> float:
        """Seconds of speech for ``text``: grows with its length, within the min/max bounds."""
        seconds = len(text) * self.seconds_per_char
        return round(min(self.max_seconds, max(self.min_seconds, seconds)), 3)

    def expected_latency(self, text: str) -> float:
        return self.latency + self.latency_per_char * len(text)

    # -- handlers --------------------------------------------------------------------------

    async def _handle_tts(self, request: web.Request) -> web.StreamResponse:
        record = RecordedRequest(received=time.monotonic(), headers=dict(request.headers))
        self.requests.append(record)
        # Popped before any await so concurrent requests take faults in arrival order.
        fault = self._script.popleft() if self._script else None
        record.fault = fault
        record.body = await request.read()
        with contextlib.suppress(ValueError):
            record.json_body = json.loads(record.body)

        if fault is not None and fault.before > 0:
            await asyncio.sleep(fault.before)
        if fault is not None and fault.kind is FaultKind.DROP:
            if request.transport is not None:
                request.transport.close()
            # Writing to the closed transport fails quietly inside aiohttp: nothing is sent.
            return web.Response(status=500)

        key = request.headers.get("x-api-key")
        answer = self._canned(fault, key) if fault is not None else None
        if answer is None:
            if fault is not None and fault.kind is FaultKind.DELAY:
                await asyncio.sleep(fault.seconds)
            override = fault if fault is not None and fault.kind is FaultKind.SHAPE else None
            answer = await self._answer_tts(request, record, override)

        record.status = answer.status
        if answer.status == 429:
            self.rate_limited_count += 1
        if fault is not None and fault.kind is FaultKind.SLOW_BODY and answer.status == 200:
            return await self._trickle(request, answer, fault.seconds)
        return _to_response(answer)

    def _canned(self, fault: Fault, key: str | None = None) -> _Answer | None:
        """The answer a fault gives instead of the normal one (None: answer normally); ``key``
        is the one the request sent, for a fault that echoes it."""
        if fault.kind in (FaultKind.STATUS, FaultKind.WRONG_CONTENT):
            return _Answer(fault.code, fault.body, fault.content_type, dict(fault.headers))
        if fault.kind is FaultKind.ECHO_KEY:
            piece = (key or "")[fault.cut[0] : fault.cut[1]]
            body = fault.body.replace(b"{key}", piece.encode())
            return _Answer(fault.code, body, fault.content_type, dict(fault.headers))
        if fault.kind is FaultKind.RATE_LIMITED:
            headers = _rate_limit_headers(fault.seconds, fault.styles, fault.reset_at)
            if fault.remaining is not None:
                headers["x-rate-limit-remaining"] = str(fault.remaining)
            headers.update(fault.headers)
            return _Answer(429, fault.body, fault.content_type, headers)
        return None

    async def _answer_tts(
        self, request: web.Request, record: RecordedRequest, override: Fault | None
    ) -> _Answer:
        """What the real service would say, checks in the order it most plausibly makes them."""
        key = request.headers.get("x-api-key")
        if not key or key != self.api_key:
            return _error(401)
        limited = self._admit(key)
        if limited is not None:
            return limited

        payload = record.json_body
        if payload is None:
            return _error(400, "Invalid JSON body")
        problem = self._validate(payload)
        if problem is not None:
            return _error(400, problem)
        if self.credits <= 0:
            return _error(406, "Insufficient credits")

        text: str = payload["text"]
        wait = self.expected_latency(text)
        if wait > 0:
            await asyncio.sleep(wait)

        out_shape = override.shape if override is not None and override.shape else self.shape
        json_key = override.json_key if override is not None else None
        duration = self.expected_duration(text)
        body = await self._body(out_shape, duration, json_key or self.json_key)

        self.credits = round(self.credits - self.cost, 9)
        headers = {
            "x-remaining-credits": _number(self.credits),
            "x-cost": _number(self.cost),
            "x-request-id": uuid.uuid4().hex,
        }
        if self.rpm_limit is not None:
            used = len(self._windows.get(key, ()))
            headers["x-rate-limit-remaining"] = str(max(0, self.rpm_limit - used))
        return _Answer(200, body, out_shape.content_type, headers)

    def _admit(self, key: str) -> _Answer | None:
        """Sliding-window rate limit per key: a 429 saying when the oldest call ages out."""
        if self.rpm_limit is None:
            return None
        now = time.monotonic()
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - self.rpm_window:
            window.popleft()
        if len(window) < self.rpm_limit:
            window.append(now)
            return None
        wait = window[0] + self.rpm_window - now
        headers = _rate_limit_headers(wait, ("seconds", "iso"), None)
        headers["x-rate-limit-remaining"] = "0"
        return _error(429, "Rate limit exceeded", headers)

    def _validate(self, payload: Any) -> str | None:
        if not isinstance(payload, dict):
            return "Request body must be a JSON object"
        text = payload.get("text")
        if not isinstance(text, str):
            return "text is required and must be a string"
        if not text.strip():
            return "text must not be empty"
        if self.max_text_chars is not None and len(text) > self.max_text_chars:
            return f"text is longer than {self.max_text_chars} characters"
        for name in ("voice_1", "voice_2"):
            voice = payload.get(name)
            if voice is None and name == "voice_2":
                continue
            if voice is None:
                voice = "Zephyr"
            if not isinstance(voice, str) or voice not in VOICES:
                return f"{name} must be one of the 30 voices, got {voice!r}"
        temperature = payload.get("temperature", 0.4)
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            return "temperature must be a number"
        if not 0 <= temperature <= 2:
            return "temperature must be between 0 and 2"
        return None

    async def _body(self, out_shape: Shape, duration: float, json_key: str | None) -> bytes:
        audio = await self._audio(duration, _FORMATS[out_shape])
        if out_shape is Shape.JSON_BASE64:
            key = json_key or DEFAULT_JSON_KEYS[out_shape]
            return json.dumps({key: base64.b64encode(audio).decode("ascii")}).encode()
        if out_shape is Shape.JSON_URL:
            key = json_key or DEFAULT_JSON_KEYS[out_shape]
            name = f"{uuid.uuid4().hex}.wav"
            self.files[name] = audio
            return json.dumps({key: f"{self.root_url}/files/{name}"}).encode()
        return audio

    async def _audio(self, duration: float, fmt: AudioFormat) -> bytes:
        """A tone of ``duration`` in ``fmt``, encoded off the loop and cached: MP3/Opus are slow."""
        cache_key = (duration, fmt)
        cached = self._audio_cache.get(cache_key)
        if cached is None:
            cached = await asyncio.to_thread(lambda: encode(tone(duration), fmt))
            self._audio_cache[cache_key] = cached
            while len(self._audio_cache) > 64:
                self._audio_cache.popitem(last=False)
        else:
            self._audio_cache.move_to_end(cache_key)
        return cached

    async def _trickle(
        self, request: web.Request, answer: _Answer, seconds: float
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=answer.status, headers=answer.headers)
        response.headers["Content-Type"] = answer.content_type
        response.content_length = len(answer.body)
        await response.prepare(request)
        chunks = self.slow_body_chunks
        step = max(1, math.ceil(len(answer.body) / chunks))
        try:
            for start in range(0, max(1, len(answer.body)), step):
                await asyncio.sleep(seconds / chunks)
                await response.write(answer.body[start : start + step])
            await response.write_eof()
        except ConnectionError:
            pass  # The client gave up mid-body, which is what this fault is there to provoke.
        return response

    async def _handle_credits(self, request: web.Request) -> web.Response:
        self.credit_checks += 1
        if request.headers.get("x-api-key") != self.api_key:
            return _to_response(_error(401))
        return web.json_response({"credits": self.credits, "free-credits": 0})

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        self.file_fetches += 1
        fault = self.file_faults.popleft() if self.file_faults else None
        if fault is not None:
            held = fault.seconds if fault.kind is FaultKind.DELAY else 0.0
            await asyncio.sleep(fault.before + held)
            if fault.kind is FaultKind.DROP:
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=500)
            canned = self._canned(fault)
            if canned is not None:
                return _to_response(canned)
        name = request.match_info["name"]
        audio = self.files.get(name)
        if audio is None:
            return _to_response(_error(404, "No such file"))
        if fault is not None and fault.kind is FaultKind.SLOW_BODY:
            answer = _Answer(200, audio, "audio/wav", dict(self.file_headers.get(name, {})))
            return await self._trickle(request, answer, fault.seconds)
        response = web.Response(body=audio, content_type="audio/wav")
        response.headers.update(self.file_headers.get(name, {}))
        return response

    async def _handle_not_found(self, request: web.Request) -> web.Response:
        return _to_response(_error(404, f"Model or endpoint not found: {request.path}"))


def _error(code: int, message: str | None = None, headers: dict[str, str] | None = None) -> _Answer:
    text = message if message is not None else _DEFAULT_MESSAGES.get(code, f"HTTP {code}")
    body = json.dumps({"error": text}).encode()
    return _Answer(code, body, "application/json", dict(headers or {}))


def _to_response(answer: _Answer) -> web.Response:
    response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
    # Set raw so parameters (audio/L16; rate=…) and odd types pass through untouched.
    if answer.content_type:
        response.headers["Content-Type"] = answer.content_type
    return response


def _number(value: float) -> str:
    return f"{value:.9g}"


def _rate_limit_headers(
    wait: float, styles: tuple[RateLimitStyle, ...], reset_at: datetime | None
) -> dict[str, str]:
    """Headers announcing when a rate-limited client may call again.

    Whole-second forms are rounded up so a client that honours them never comes back early.
    """
    now = datetime.now(UTC)
    at = reset_at.astimezone(UTC) if reset_at is not None else now + timedelta(seconds=wait)
    seconds = max(0, math.ceil((at - now).total_seconds()))
    at_ceil = at.replace(microsecond=0) + timedelta(seconds=1 if at.microsecond else 0)
    headers: dict[str, str] = {}
    for style in styles:
        if style == "seconds":
            headers["Retry-After"] = str(seconds)
        elif style == "http-date":
            headers["Retry-After"] = format_datetime(at_ceil, usegmt=True)
        elif style == "iso":
            iso = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            headers["x-rate-limit-reset-at-utc"] = iso
        elif style == "epoch":
            headers["x-rate-limit-reset-at-utc"] = str(math.ceil(at.timestamp()))
        elif style == "reset-http-date":
            headers["x-rate-limit-reset-at-utc"] = format_datetime(at_ceil, usegmt=True)
    return headers


def decode_json_audio(body: bytes, key: str = "audio") -> bytes:
    """The WAV bytes inside a JSON_BASE64 answer (a convenience for tests)."""
    try:
        return base64.b64decode(json.loads(body)[key], validate=True)
    except (KeyError, ValueError, binascii.Error) as exc:
        raise ValueError(f"no base64 audio under {key!r}") from exc


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeSegmind(
        api_key=args.api_key,
        shape=Shape(args.shape),
        json_key=args.json_key,
        latency=args.latency,
        latency_per_char=args.latency_per_char,
        credits=args.credits,
        rpm_limit=args.rpm,
        port=args.port,
    )
    async with fake:
        print(f"SEGMIND_BASE_URL={fake.base_url}", flush=True)
        print(f"SEGMIND_API_KEY={fake.api_key}", flush=True)
        print("Serving fake Segmind on 127.0.0.1; Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Serve the fake until Ctrl-C, for manual bot runs against 127.0.0.1."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_segmind", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--shape", choices=[s.value for s in Shape], default=Shape.WAV.value)
    parser.add_argument("--json-key", default=None, help="key for the json_* shapes")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--latency-per-char", type=float, default=0.0)
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute per key")
    parser.add_argument("--credits", type=float, default=100.0)
    parser.add_argument("--api-key", default="test-key")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
