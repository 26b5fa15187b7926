"""The Segmind client against aioresponses: every response shape and status, one attempt per
call; and the retry rules it feeds, through the real scheduler the bot and the terminal share."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from bot import audio
from bot.audio import AudioFormat
from bot.errors import (
    AuthenticationError,
    BadAudioError,
    BadRequestError,
    ModelNotFoundError,
    OutOfCreditsError,
    PermissionDeniedError,
    RateLimitedError,
    RequestExpiredError,
    SegmindConnectionError,
    SegmindError,
    SegmindTimeoutError,
    ServerError,
    UnexpectedStatusError,
)
from bot.speech.access import Requester
from bot.speech.request import build_request
from bot.synthesis.client import CallRecord, SegmindClient, Timeouts
from bot.synthesis.scheduler import Scheduler, SchedulerConfig
from tests.conftest import TEST_API_KEY
from tests.signals import tone

BASE = "http://segmind.test/v1"
URL_TTS = f"{BASE}/gemini-2.5-flash-tts"
NOW = 1_764_072_000.0

TONE = tone(1.5)
WAV = audio.encode_wav(TONE)


class FakeTime:
    """A clock that only moves when the client sleeps, so waits are exact and instant."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return NOW + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def make_client(session: aiohttp.ClientSession, clock: FakeTime) -> Callable[..., SegmindClient]:
    def build(**timeouts: Any) -> SegmindClient:
        return SegmindClient(
            session,
            api_key=TEST_API_KEY,
            base_url=BASE,
            timeouts=Timeouts(**timeouts),
            clock=clock.monotonic,
            wall_clock=clock.wall,
            resolve=public_resolver,
        )

    return build


#: Where the tests' made-up public hosts "resolve" (never contacted: aioresponses answers).
PUBLIC_ADDRESS = "93.184.216.34"


async def public_resolver(host: str, port: int) -> list[str]:
    return [PUBLIC_ADDRESS]


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as m:
        yield m


def calls(m: Any, method: str = "POST", url: str = URL_TTS) -> list[Any]:
    return list(m.requests.get((method, URL(url)), []))


REQUEST = build_request("Hello from the tests", voice="kore", temperature=0.7)


async def test_sends_exactly_the_documented_request(
    mocked: Any, make_client: Callable[..., SegmindClient]
) -> None:
    mocked.post(URL_TTS, body=WAV, headers={"Content-Type": "audio/wav"})
    await make_client().synthesize(REQUEST)
    (call,) = calls(mocked)
    assert call.kwargs["json"] == {
        "text": "Hello from the tests",
        "voice_1": "Kore",
        "temperature": 0.7,
    }
    assert call.kwargs["headers"]["x-api-key"] == TEST_API_KEY


def _json(payload: object) -> bytes:
    return json.dumps(payload).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


OGG = audio.encode_ogg_opus(TONE)
MP3 = audio.encode_mp3(TONE)


@pytest.mark.parametrize(
    ("body", "content_type", "fmt"),
    [
        (WAV, "audio/wav", AudioFormat.WAV),
        (WAV, "application/octet-stream", AudioFormat.WAV),
        (MP3, "audio/mpeg", AudioFormat.MP3),
        (OGG, "audio/ogg", AudioFormat.OGG),
        (OGG, None, AudioFormat.OGG),
        (TONE.data, "audio/L16; rate=24000; channels=1", AudioFormat.PCM),
        (TONE.data, "application/octet-stream", AudioFormat.PCM),
        (_json({"audio": _b64(WAV)}), "application/json", AudioFormat.WAV),
        (_json({"audio_base64": _b64(OGG)}), "application/json", AudioFormat.OGG),
        (_json({"output": _b64(MP3)}), "application/json; charset=utf-8", AudioFormat.MP3),
        (_json({"data": {"audio": _b64(WAV)}}), "application/json", AudioFormat.WAV),
        (
            _json({"audio": "data:audio/wav;base64," + _b64(WAV)}),
            "application/json",
            AudioFormat.WAV,
        ),
        (_json({"audio": _b64(TONE.data)}), "application/json", AudioFormat.PCM),
    ],
)
async def test_every_response_shape_becomes_one_audio_value(
    mocked: Any,
    make_client: Callable[..., SegmindClient],
    body: bytes,
    content_type: str | None,
    fmt: AudioFormat,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    mocked.post(URL_TTS, body=body, headers=headers)
    result = await make_client().synthesize(REQUEST)
    assert result.format is fmt
    assert result.duration == pytest.approx(1.5, abs=0.05)
    assert result.channels == 1
    assert len(audio.decode_audio(result).data) > 0


async def test_pcm_rate_comes_from_the_content_type(
    mocked: Any, make_client: Callable[..., SegmindClient]
) -> None:
    stereo_16k = tone(2.0, sample_rate=16_000, channels=2)
    mocked.post(
        URL_TTS, body=stereo_16k.data, headers={"Content-Type": "audio/L16;rate=16000;channels=2"}
    )
    result = await make_client().synthesize(REQUEST)
    assert (result.sample_rate, result.channels) == (16_000, 2)
    assert result.duration == pytest.approx(2.0, abs=0.001)


async def test_json_with_a_link_fetches_it_without_the_api_key(
    mocked: Any, make_client: Callable[..., SegmindClient]
) -> None:
    link = "https://files.segmind.test/out/abc.ogg?sig=1"
    mocked.post(
        URL_TTS, body=_json({"audio_url": link}), headers={"Content-Type": "application/json"}
    )
    # Fetched from the address that was checked, under the link's own name.
    pinned = f"https://{PUBLIC_ADDRESS}/out/abc.ogg?sig=1"
    mocked.get(pinned, body=OGG, headers={"Content-Type": "audio/ogg"})
    result = await make_client().synthesize(REQUEST)
    assert result.format is AudioFormat.OGG
    (fetch,) = calls(mocked, "GET", pinned)
    headers = fetch.kwargs.get("headers") or {}
    assert "x-api-key" not in headers
    assert headers["Host"] == "files.segmind.test"
    assert fetch.kwargs["server_hostname"] == "files.segmind.test"
    assert fetch.kwargs["allow_redirects"] is False


@pytest.mark.parametrize(
    ("body", "content_type", "said"),
    [
        (b"<html><title>Gateway</title><body>oops</body></html>", "text/html", "HTML page"),
        (b"", "audio/wav", None),
        (b"RIFF\x00\x00\x00\x00WAVEgarbage" * 4, "audio/wav", None),
        (b"\x00\x01" * 3, "audio/mpeg", None),
        (_json({"status": "ok"}), "application/json", None),
        (_json({"error": "model overloaded"}), "application/json", "model overloaded"),
        (_json({"audio": "!!!! not base64 at all !!!!"}), "application/json", None),
        (b"{not json", "application/json", None),
        (b"plain words", "text/plain", "plain words"),
    ],
)
async def test_a_success_whose_body_is_not_audio_is_an_error_not_a_file(
    mocked: Any,
    make_client: Callable[..., SegmindClient],
    body: bytes,
    content_type: str,
    said: str | None,
) -> None:
    mocked.post(URL_TTS, body=body, headers={"Content-Type": content_type})
    with pytest.raises(BadAudioError) as info:
        await make_client().synthesize(REQUEST)
    assert len(calls(mocked)) == 1  # Never retried: a 200 may already have been billed.
    if said:
        assert said in str(info.value)


@pytest.mark.parametrize(
    ("status", "error", "fragment"),
    [
        (400, BadRequestError, "bad request"),
        (401, AuthenticationError, "the API key was rejected"),
        (403, PermissionDeniedError, "permission"),
        (404, ModelNotFoundError, "not found"),
        (406, OutOfCreditsError, "out of credits"),
        (418, UnexpectedStatusError, "unexpected"),
    ],
)
async def test_client_errors_are_typed_and_never_retried(
    mocked: Any,
    make_client: Callable[..., SegmindClient],
    clock: FakeTime,
    status: int,
    error: type[SegmindError],
    fragment: str,
) -> None:
    mocked.post(URL_TTS, status=status, payload={"error": "upstream says no"}, repeat=True)
    with pytest.raises(error) as info:
        await make_client().synthesize(REQUEST)
    assert len(calls(mocked)) == 1
    assert clock.sleeps == []
    exc = info.value
    assert exc.status == status
    assert exc.upstream_message == "upstream says no"
    assert fragment in str(exc)
    assert f"HTTP {status}" in str(exc)
    assert exc.user_message


def test_bad_request_shows_the_upstream_reason_to_members() -> None:
    exc = BadRequestError(status=400, upstream_message="text too long")
    assert "text too long" in exc.user_message


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "Tue, 25 Nov 2025 12:00:20 GMT"}, 20.0),
        ({"x-rate-limit-reset-at-utc": "2025-11-25T12:00:12Z"}, 12.0),
        ({"x-rate-limit-reset-at-utc": "Tue, 25 Nov 2025 12:00:09 GMT"}, 9.0),
        ({"x-rate-limit-reset-at-utc": str(int(NOW) + 15)}, 15.0),
    ],
)
async def test_429_carries_the_reset_the_headers_give(
    mocked: Any,
    make_client: Callable[..., SegmindClient],
    clock: FakeTime,
    headers: dict[str, str],
    wait: float,
) -> None:
    mocked.post(URL_TTS, status=429, headers=headers, payload={"error": "slow down"})
    with pytest.raises(RateLimitedError) as info:
        await make_client().synthesize(REQUEST)
    assert info.value.retry_after == pytest.approx(wait)
    assert info.value.retryable
    assert len(calls(mocked)) == 1
    assert clock.sleeps == []  # The scheduler waits, for everyone; the client never does.


async def test_429_without_reset_headers_leaves_the_wait_to_the_scheduler(
    mocked: Any, make_client: Callable[..., SegmindClient]
) -> None:
    mocked.post(URL_TTS, status=429)
    with pytest.raises(RateLimitedError) as info:
        await make_client().synthesize(REQUEST)
    assert info.value.retry_after is None
    assert len(calls(mocked)) == 1


async def test_every_call_is_exactly_one_attempt(
    mocked: Any, make_client: Callable[..., SegmindClient], clock: FakeTime
) -> None:
    mocked.post(URL_TTS, status=429, headers={"Retry-After": "30"})
    mocked.post(URL_TTS, status=502)
    client = make_client()
    with pytest.raises(RateLimitedError) as info:
        await client.synthesize(REQUEST)
    assert info.value.retry_after == 30.0
    with pytest.raises(ServerError):
        await client.synthesize(REQUEST)
    assert len(calls(mocked)) == 2
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_typed_as_worth_retrying(
    mocked: Any, make_client: Callable[..., SegmindClient], status: int
) -> None:
    mocked.post(URL_TTS, status=status, body=b"<html>bad gateway</html>", content_type="text/html")
    with pytest.raises(ServerError) as info:
        await make_client().synthesize(REQUEST)
    assert info.value.retryable
    assert not info.value.operator_problem
    assert info.value.status == status
    assert len(calls(mocked)) == 1


def scheduled(client: SegmindClient, **config: Any) -> Scheduler:
    """The client behind the real scheduler, with quick back-off: the one retry engine."""
    config.setdefault("rpm", 600)
    config.setdefault("backoff_base", 0.01)
    config.setdefault("backoff_max", 0.05)
    config.setdefault("user_cooldown", 0)
    scheduler = Scheduler(client.synthesize, SchedulerConfig(**config))
    scheduler.start()
    return scheduler


async def test_through_the_scheduler_server_errors_are_retried_then_succeed(
    mocked: Any, session: aiohttp.ClientSession
) -> None:
    mocked.post(URL_TTS, status=502, body=b"<html>bad gateway</html>", content_type="text/html")
    mocked.post(URL_TTS, status=503)
    mocked.post(URL_TTS, body=WAV, headers={"Content-Type": "audio/wav"})
    scheduler = scheduled(SegmindClient(session, api_key=TEST_API_KEY, base_url=BASE))
    try:
        ticket = scheduler.submit(REQUEST, Requester(1))
        result = await asyncio.wait_for(ticket.result(), 10)
    finally:
        await scheduler.close(grace=0)
    assert result.format is AudioFormat.WAV
    assert len(calls(mocked)) == 3
    assert ticket.attempts == 3


async def test_through_the_scheduler_server_errors_are_bounded_by_attempts(
    mocked: Any, session: aiohttp.ClientSession
) -> None:
    mocked.post(URL_TTS, status=502, repeat=True)
    client = SegmindClient(session, api_key=TEST_API_KEY, base_url=BASE)
    scheduler = scheduled(client, max_attempts=3)
    try:
        with pytest.raises(ServerError) as info:
            await asyncio.wait_for(scheduler.submit(REQUEST, Requester(1)).result(), 10)
    finally:
        await scheduler.close(grace=0)
    assert len(calls(mocked)) == 3
    assert info.value.attempts == 3
    assert "HTTP 502 (bad gateway)" in str(info.value)
    assert "after 3 attempts" in str(info.value)


async def test_through_the_scheduler_a_request_ends_at_its_deadline(
    mocked: Any, session: aiohttp.ClientSession
) -> None:
    mocked.post(URL_TTS, status=429, headers={"Retry-After": "40"}, repeat=True)
    client = SegmindClient(session, api_key=TEST_API_KEY, base_url=BASE)
    scheduler = scheduled(client, job_timeout=0.3)
    try:
        with pytest.raises(RequestExpiredError):
            await asyncio.wait_for(scheduler.submit(REQUEST, Requester(1)).result(), 10)
    finally:
        await scheduler.close(grace=0)
    assert len(calls(mocked)) == 1  # Paused for the 40 s reset; no call was wasted meanwhile.


@pytest.mark.parametrize(
    ("exception", "error"),
    [
        (TimeoutError(), SegmindTimeoutError),
        (aiohttp.ServerTimeoutError("read timed out"), SegmindTimeoutError),
        (aiohttp.ServerDisconnectedError(), SegmindConnectionError),
        (aiohttp.ClientConnectionError("connection reset"), SegmindConnectionError),
        (aiohttp.ClientPayloadError("cut short"), SegmindConnectionError),
    ],
)
async def test_timeouts_and_dropped_connections_are_retried(
    mocked: Any,
    session: aiohttp.ClientSession,
    make_client: Callable[..., SegmindClient],
    exception: Exception,
    error: type[SegmindError],
) -> None:
    mocked.post(URL_TTS, exception=exception)
    with pytest.raises(error) as info:
        await make_client().synthesize(REQUEST)
    assert info.value.retryable
    assert len(calls(mocked)) == 1

    mocked.clear()
    mocked.post(URL_TTS, exception=exception)
    mocked.post(URL_TTS, body=WAV, headers={"Content-Type": "audio/wav"})
    scheduler = scheduled(SegmindClient(session, api_key=TEST_API_KEY, base_url=BASE))
    try:
        result = await asyncio.wait_for(scheduler.submit(REQUEST, Requester(1)).result(), 10)
    finally:
        await scheduler.close(grace=0)
    assert result.format is AudioFormat.WAV


async def test_remaining_credits_and_call_records(
    mocked: Any, make_client: Callable[..., SegmindClient]
) -> None:
    mocked.post(URL_TTS, status=500, headers={"x-request-id": "r1"})
    mocked.post(
        URL_TTS,
        body=WAV,
        headers={
            "Content-Type": "audio/wav",
            "x-remaining-credits": "12.345",
            "x-cost": "0.005",
            "x-request-id": "r2",
        },
    )
    client = make_client()
    records: list[CallRecord] = []
    client.add_listener(records.append)
    with pytest.raises(ServerError):
        await client.synthesize(REQUEST)
    await client.synthesize(REQUEST)
    assert client.remaining_credits == pytest.approx(12.345)
    assert [(r.status, r.request_id, r.error) for r in records] == [
        (500, "r1", "ServerError"),
        (200, "r2", None),
    ]
    assert records[1].cost == pytest.approx(0.005)
    assert records[1].audio_seconds == pytest.approx(1.5, abs=0.05)


async def test_get_credits(mocked: Any, make_client: Callable[..., SegmindClient]) -> None:
    mocked.get(f"{BASE}/get-user-credits", payload={"credits": 4.5, "free-credits": 0.5})
    client = make_client()
    balance = await client.get_credits()
    assert (balance.credits, balance.free_credits, balance.total) == (4.5, 0.5, 5.0)
    assert client.remaining_credits == 5.0
    mocked.get(f"{BASE}/get-user-credits", status=401, payload={"message": "bad key"})
    with pytest.raises(AuthenticationError):
        await client.get_credits()


async def test_the_api_key_never_leaks(
    mocked: Any,
    make_client: Callable[..., SegmindClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"error": f"invalid key {TEST_API_KEY}"}
    failures: list[BaseException] = []
    scenarios: list[dict[str, Any]] = [
        {"status": 401, "payload": echo},
        {"status": 400, "payload": echo},
        {"status": 200, "payload": echo},
        {"status": 502, "body": f"proxy: {TEST_API_KEY}"},
        {"exception": aiohttp.ClientConnectionError(f"reset {TEST_API_KEY}")},
    ]
    for scenario in scenarios:
        mocked.clear()
        mocked.post(URL_TTS, repeat=True, **scenario)
        try:
            await make_client().synthesize(REQUEST)
        except SegmindError as exc:
            failures.append(exc)
    assert len(failures) == len(scenarios)
    for failure in failures:
        assert isinstance(failure, SegmindError)
        for text in (str(failure), repr(failure), failure.user_message, str(failure.args)):
            assert TEST_API_KEY not in text
        assert failure.__cause__ is None
    assert TEST_API_KEY not in caplog.text
    assert "[redacted]" in str(failures[0])


async def test_cancellation_is_not_swallowed(
    session: aiohttp.ClientSession,
) -> None:
    async def slow(url: Any, **kwargs: Any) -> None:
        await asyncio.sleep(10)

    with aioresponses() as m:
        # A slow upstream: cancelling the caller must cancel the call, not be swallowed.
        m.post(URL_TTS, callback=slow)
        client = SegmindClient(session, api_key=TEST_API_KEY, base_url=BASE)
        task = asyncio.create_task(client.synthesize(REQUEST))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
