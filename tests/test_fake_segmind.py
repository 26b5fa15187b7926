"""The fake Segmind must itself be right, or every test built on it proves nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.audio import AudioFormat, decode
from tests.fake_segmind import (
    PCM_CONTENT_TYPE,
    TTS_PATH,
    FakeSegmind,
    Shape,
    delay,
    drop,
    rate_limited,
    shape,
    slow_body,
    status,
    wrong_content,
)

KEY = "test-key"
REPO = Path(__file__).resolve().parents[1]
TEXT = "Narrator: The quick brown fox jumps over the lazy dog."


@pytest.fixture
async def fake() -> AsyncIterator[FakeSegmind]:
    async with FakeSegmind() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(
    session: aiohttp.ClientSession,
    fake: FakeSegmind,
    body: Any = None,
    *,
    key: str | None = KEY,
    client_timeout: aiohttp.ClientTimeout | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """POST to the TTS endpoint the way the bot will; returns status, headers, body."""
    payload = {"text": TEXT, "voice_1": "Kore"} if body is None else body
    headers = {"x-api-key": key} if key is not None else {}
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers["Content-Type"] = "application/json"
    async with session.post(
        fake.base_url + "/gemini-2.5-flash-tts",
        data=data,
        headers=headers,
        timeout=client_timeout or aiohttp.ClientTimeout(total=10),
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def error_message(body: bytes) -> str:
    message = json.loads(body)["error"]
    assert isinstance(message, str)
    assert message
    return message


# -- basics --------------------------------------------------------------------------------


async def test_listens_on_loopback_with_a_free_port(fake: FakeSegmind) -> None:
    assert fake.port > 0
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1"
    assert fake.tts_url.endswith(TTS_PATH)


async def test_base_url_before_start_raises() -> None:
    with pytest.raises(RuntimeError):
        _ = FakeSegmind().base_url


def test_expected_duration_grows_with_text_and_is_bounded() -> None:
    fake = FakeSegmind(seconds_per_char=0.1, min_seconds=0.5, max_seconds=3.0)
    assert fake.expected_duration("hi") == 0.5
    assert fake.expected_duration("x" * 12) == pytest.approx(1.2)
    assert fake.expected_duration("x" * 20) > fake.expected_duration("x" * 12)
    assert fake.expected_duration("x" * 1000) == 3.0


# -- audio shapes --------------------------------------------------------------------------


async def fetch_audio(
    session: aiohttp.ClientSession, shape_: Shape, body: bytes, json_key: str
) -> tuple[bytes, AudioFormat]:
    """Unwrap the audio bytes and their format the way a client would for each shape."""
    if shape_ is Shape.JSON_BASE64:
        return base64.b64decode(json.loads(body)[json_key], validate=True), AudioFormat.WAV
    if shape_ is Shape.JSON_URL:
        url = json.loads(body)[json_key]
        assert url.startswith("http://127.0.0.1:")
        async with session.get(url) as resp:
            assert resp.status == 200
            assert resp.content_type == "audio/wav"
            return await resp.read(), AudioFormat.WAV
    fmt = {
        Shape.WAV: AudioFormat.WAV,
        Shape.MP3: AudioFormat.MP3,
        Shape.OGG: AudioFormat.OGG,
        Shape.PCM: AudioFormat.PCM,
        Shape.OCTET: AudioFormat.PCM,
    }[shape_]
    return body, fmt


SHAPE_CASES = [
    (Shape.WAV, None, "audio/wav", b"RIFF"),
    (Shape.MP3, None, "audio/mpeg", None),
    (Shape.OGG, None, "audio/ogg", b"OggS"),
    (Shape.PCM, None, PCM_CONTENT_TYPE, None),
    (Shape.OCTET, None, "application/octet-stream", None),
    *[(Shape.JSON_BASE64, k, "application/json", b"{") for k in ("audio", "audio_base64")],
    *[(Shape.JSON_BASE64, k, "application/json", b"{") for k in ("output", "data")],
    *[(Shape.JSON_URL, k, "application/json", b"{") for k in ("audio_url", "url", "output")],
]


@pytest.mark.parametrize(("shape_", "json_key", "content_type", "magic"), SHAPE_CASES)
async def test_each_shape_serves_decodable_audio_of_the_expected_duration(
    session: aiohttp.ClientSession,
    shape_: Shape,
    json_key: str | None,
    content_type: str,
    magic: bytes | None,
) -> None:
    async with FakeSegmind(shape=shape_, json_key=json_key) as fake:
        code, headers, body = await call(session, fake)
        assert code == 200
        assert headers["Content-Type"] == content_type
        if magic is not None:
            assert body.startswith(magic)
        audio, fmt = await fetch_audio(session, shape_, body, json_key or _default_key(shape_))
        pcm = decode(audio, fmt)
        assert pcm.channels == 1
        assert abs(pcm.duration - fake.expected_duration(TEXT)) < 0.05


def _default_key(shape_: Shape) -> str:
    return "audio_url" if shape_ is Shape.JSON_URL else "audio"


async def test_json_url_file_is_served_without_a_key_and_unknown_files_404(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSegmind(shape=Shape.JSON_URL) as fake:
        _, _, body = await call(session, fake)
        async with session.get(json.loads(body)["audio_url"]) as resp:
            assert resp.status == 200
        async with session.get(fake.root_url + "/files/nope.wav") as resp:
            assert resp.status == 404
        assert fake.file_fetches == 2


async def test_longer_text_gives_longer_audio(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    durations = []
    for text in ("Short one here.", "A much longer sentence, " * 4):
        _, _, body = await call(session, fake, {"text": text})
        durations.append(decode(body, AudioFormat.WAV).duration)
    assert durations[1] > durations[0] + 1


async def test_success_headers_and_credit_accounting(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    _, headers, _ = await call(session, fake)
    assert float(headers["x-cost"]) == pytest.approx(0.005)
    assert float(headers["x-remaining-credits"]) == pytest.approx(99.995)
    first_id = headers["x-request-id"]
    _, headers, _ = await call(session, fake)
    assert headers["x-request-id"] != first_id
    assert float(headers["x-remaining-credits"]) == pytest.approx(99.99)
    async with session.get(fake.base_url + "/get-user-credits", headers={"x-api-key": KEY}) as r:
        assert r.status == 200
        assert await r.json() == {"credits": pytest.approx(99.99), "free-credits": 0}


async def test_credits_run_out_with_406_and_406_costs_nothing(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSegmind(credits=0.01, cost=0.005) as fake:
        assert (await call(session, fake))[0] == 200
        assert (await call(session, fake))[0] == 200
        code, _, body = await call(session, fake)
        assert code == 406
        assert "credit" in error_message(body).lower()
        assert fake.credits == pytest.approx(0)
        fake.credits = 1.0  # topping up works at once
        assert (await call(session, fake))[0] == 200


# -- auth and validation -------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "wrong-key"])
async def test_missing_or_wrong_key_is_401(
    fake: FakeSegmind, session: aiohttp.ClientSession, key: str | None
) -> None:
    code, headers, body = await call(session, fake, key=key)
    assert code == 401
    assert headers["Content-Type"].startswith("application/json")
    error_message(body)
    assert fake.credits == 100.0


async def test_credit_check_needs_the_key(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    async with session.get(fake.base_url + "/get-user-credits") as resp:
        assert resp.status == 401
    assert fake.credit_checks == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "json"),
        (b"", "json"),
        (["text"], "object"),
        ({}, "text"),
        ({"text": 5}, "text"),
        ({"text": "   "}, "empty"),
        ({"text": "hi", "voice_1": "Nobody"}, "voice_1"),
        ({"text": "hi", "voice_1": "kore"}, "voice_1"),
        ({"text": "hi", "voice_2": "Nobody"}, "voice_2"),
        ({"text": "hi", "temperature": -0.1}, "temperature"),
        ({"text": "hi", "temperature": 2.01}, "temperature"),
        ({"text": "hi", "temperature": "warm"}, "temperature"),
        ({"text": "hi", "temperature": True}, "temperature"),
    ],
)
async def test_bad_requests_are_400_with_a_message(
    fake: FakeSegmind, session: aiohttp.ClientSession, body: Any, fragment: str
) -> None:
    code, _, raw = await call(session, fake, body)
    assert code == 400
    assert fragment in error_message(raw).lower()
    assert fake.credits == 100.0


@pytest.mark.parametrize(
    "body",
    [
        {"text": "hi"},
        {"text": "Joe: hi / Jane: hey", "voice_1": "Puck", "voice_2": "Sulafat"},
        {"text": "hi", "voice_2": None, "temperature": 0},
        {"text": "hi", "voice_1": "Zubenelgenubi", "temperature": 2},
    ],
)
async def test_valid_edge_requests_succeed(
    fake: FakeSegmind, session: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    assert (await call(session, fake, body))[0] == 200


async def test_max_text_chars_is_enforced(session: aiohttp.ClientSession) -> None:
    async with FakeSegmind(max_text_chars=10) as fake:
        assert (await call(session, fake, {"text": "x" * 10}))[0] == 200
        assert (await call(session, fake, {"text": "x" * 11}))[0] == 400


@pytest.mark.parametrize("path", ["/gemini-2.5-pro-tts", "/nope/deeper", ""])
async def test_unknown_paths_are_404(
    fake: FakeSegmind, session: aiohttp.ClientSession, path: str
) -> None:
    async with session.post(fake.base_url + path, headers={"x-api-key": KEY}, json={}) as resp:
        assert resp.status == 404
        error_message(await resp.read())
    assert fake.tts_calls == 0


# -- recording -----------------------------------------------------------------------------


async def test_requests_are_recorded_in_order(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    await call(session, fake, {"text": "first"})
    await call(session, fake, b"garbage")
    await call(session, fake, {"text": "third"}, key="bad")
    assert fake.tts_calls == 3
    assert fake.statuses() == [200, 400, 401]
    assert fake.successes == 1
    first, second, third = fake.requests
    assert first.json_body == {"text": "first"}
    assert first.body == b'{"text": "first"}'
    assert first.headers["x-api-key"] == KEY
    assert second.json_body is None
    assert second.body == b"garbage"
    assert third.headers["x-api-key"] == "bad"
    assert first.received <= second.received <= third.received <= time.monotonic()


# -- latency -------------------------------------------------------------------------------


async def test_latency_grows_with_text_length(session: aiohttp.ClientSession) -> None:
    async with FakeSegmind(latency=0.02, latency_per_char=0.002) as fake:
        assert fake.expected_latency("x" * 100) == pytest.approx(0.22)
        started = time.monotonic()
        await call(session, fake, {"text": "x" * 100})
        assert time.monotonic() - started >= 0.22
        started = time.monotonic()
        await call(session, fake, {"text": "x"})
        assert time.monotonic() - started < 0.2


# -- faults --------------------------------------------------------------------------------


async def test_status_fault_is_consumed_once(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(status(500), status(504, "upstream timed out", headers={"x-extra": "1"}))
    assert fake.pending_faults == 2
    code, _, body = await call(session, fake)
    assert code == 500
    error_message(body)
    code, headers, body = await call(session, fake)
    assert code == 504
    assert error_message(body) == "upstream timed out"
    assert headers["x-extra"] == "1"
    assert (await call(session, fake))[0] == 200
    assert fake.pending_faults == 0
    assert fake.credits == pytest.approx(100 - 0.005)


async def test_status_fault_with_an_html_proxy_page(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    fake.enqueue(status(502, body=page))
    code, headers, body = await call(session, fake)
    assert (code, body) == (502, page)
    assert headers["Content-Type"] == "text/html"


async def test_faults_apply_even_to_requests_that_would_fail_validation(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(status(503))
    assert (await call(session, fake, key="bad"))[0] == 503
    assert fake.requests[0].fault is not None


async def test_delayed_fault(fake: FakeSegmind, session: aiohttp.ClientSession) -> None:
    fake.enqueue(status(502).delayed(0.15))
    started = time.monotonic()
    assert (await call(session, fake))[0] == 502
    assert time.monotonic() - started >= 0.15


def _reset_header_time(value: str) -> datetime:
    if value.isdigit():
        return datetime.fromtimestamp(int(value), UTC)
    if value[0].isdigit():
        return datetime.fromisoformat(value)
    return parsedate_to_datetime(value)


@pytest.mark.parametrize(
    ("style", "retry_after", "reset"),
    [
        ("seconds", "seconds", None),
        ("http-date", "date", None),
        ("iso", None, "iso"),
        ("epoch", None, "epoch"),
        ("reset-http-date", None, "date"),
        ("none", None, None),
        (("seconds", "iso"), "seconds", "iso"),
    ],
)
async def test_rate_limited_fault_styles(
    fake: FakeSegmind,
    session: aiohttp.ClientSession,
    style: Any,
    retry_after: str | None,
    reset: str | None,
) -> None:
    fake.enqueue(rate_limited(2.5, style=style))
    now = datetime.now(UTC)
    code, headers, body = await call(session, fake)
    assert code == 429
    error_message(body)
    assert headers["x-rate-limit-remaining"] == "0"
    assert fake.rate_limited_count == 1
    if retry_after is None:
        assert "Retry-After" not in headers
    elif retry_after == "seconds":
        assert headers["Retry-After"] == "3"
    else:
        when = parsedate_to_datetime(headers["Retry-After"])
        assert now + timedelta(seconds=2) <= when <= now + timedelta(seconds=4)
    if reset is None:
        assert "x-rate-limit-reset-at-utc" not in headers
    else:
        value = headers["x-rate-limit-reset-at-utc"]
        assert value.isdigit() == (reset == "epoch")
        assert value.endswith("GMT") == (reset == "date")
        when = _reset_header_time(value)
        assert now + timedelta(seconds=2) <= when <= now + timedelta(seconds=4)


async def test_rate_limited_with_explicit_reset_and_raw_headers(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    reset_at = datetime.now(UTC) + timedelta(seconds=30)
    fake.enqueue(
        rate_limited(style="iso", reset_at=reset_at, remaining=None, headers={"Retry-After": "x"})
    )
    _, headers, _ = await call(session, fake)
    assert headers["Retry-After"] == "x"
    assert "x-rate-limit-remaining" not in headers
    sent = datetime.fromisoformat(headers["x-rate-limit-reset-at-utc"])
    assert abs((sent - reset_at).total_seconds()) < 0.002


async def test_delay_trips_a_client_timeout(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(delay(2.0))
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await call(session, fake, client_timeout=aiohttp.ClientTimeout(total=0.1))
    assert time.monotonic() - started < 1.0
    assert fake.tts_calls == 1


async def test_short_delay_then_a_normal_answer(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(delay(0.1))
    started = time.monotonic()
    code, _, body = await call(session, fake)
    assert code == 200
    assert time.monotonic() - started >= 0.1
    assert decode(body, AudioFormat.WAV).duration == pytest.approx(
        fake.expected_duration(TEXT), abs=0.05
    )


async def test_slow_body_sends_headers_then_trickles(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(slow_body(0.3))
    started = time.monotonic()
    async with session.post(fake.tts_url, headers={"x-api-key": KEY}, json={"text": TEXT}) as r:
        headers_after = time.monotonic() - started
        assert r.status == 200
        body = await r.read()
    body_after = time.monotonic() - started
    assert headers_after < 0.15
    assert body_after >= 0.28
    assert decode(body, AudioFormat.WAV).duration == pytest.approx(
        fake.expected_duration(TEXT), abs=0.05
    )


async def test_slow_body_trips_a_read_timeout(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(slow_body(2.0))
    with pytest.raises(asyncio.TimeoutError):
        await call(session, fake, client_timeout=aiohttp.ClientTimeout(sock_read=0.05))


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html>Maintenance</html>", "text/html"),
        (b"", "audio/wav"),
        (b"\x00garbage\xff" * 10, "audio/wav"),
        (b'{"status": "ok"}', "application/json"),
    ],
)
async def test_wrong_content_is_served_verbatim(
    fake: FakeSegmind, session: aiohttp.ClientSession, body: bytes, content_type: str
) -> None:
    fake.enqueue(wrong_content(body, content_type))
    code, headers, got = await call(session, fake)
    assert (code, got) == (200, body)
    assert headers["Content-Type"] == content_type
    assert fake.credits == 100.0


async def test_drop_closes_the_connection_without_an_answer(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(drop())
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(session, fake)
    assert fake.statuses() == [None]
    assert (await call(session, fake))[0] == 200  # the server itself is fine


async def test_shape_fault_changes_one_answer(
    fake: FakeSegmind, session: aiohttp.ClientSession
) -> None:
    fake.enqueue(shape(Shape.OGG), shape(Shape.JSON_BASE64, json_key="data"))
    _, headers, body = await call(session, fake)
    assert headers["Content-Type"] == "audio/ogg"
    assert decode(body, AudioFormat.OGG).duration == pytest.approx(
        fake.expected_duration(TEXT), abs=0.05
    )
    _, headers, body = await call(session, fake)
    assert set(json.loads(body)) == {"data"}
    _, headers, _ = await call(session, fake)
    assert headers["Content-Type"] == "audio/wav"


# -- rate limit enforced by the server -----------------------------------------------------


async def test_rpm_limit_answers_429_until_the_window_frees_a_slot(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSegmind(rpm_limit=2, rpm_window=0.4) as fake:
        _, headers, _ = await call(session, fake)
        assert headers["x-rate-limit-remaining"] == "1"
        _, headers, _ = await call(session, fake)
        assert headers["x-rate-limit-remaining"] == "0"
        now = datetime.now(UTC)
        code, headers, body = await call(session, fake)
        assert code == 429
        error_message(body)
        assert headers["Retry-After"] == "1"  # 0.4 s or less, rounded up
        assert headers["x-rate-limit-remaining"] == "0"
        reset = datetime.fromisoformat(headers["x-rate-limit-reset-at-utc"])
        assert now < reset <= now + timedelta(seconds=0.45)
        assert fake.rate_limited_count == 1
        assert fake.credits == pytest.approx(100 - 2 * 0.005)

        await asyncio.sleep((reset - datetime.now(UTC)).total_seconds() + 0.02)
        assert (await call(session, fake))[0] == 200
        assert fake.statuses() == [200, 200, 429, 200]


async def test_rpm_limit_applies_to_concurrent_bursts(session: aiohttp.ClientSession) -> None:
    async with FakeSegmind(rpm_limit=3, rpm_window=5) as fake:
        results = await asyncio.gather(*(call(session, fake) for _ in range(5)))
        assert sorted(code for code, _, _ in results) == [200, 200, 200, 429, 429]
        assert fake.rate_limited_count == 2
        for code, headers, _ in results:
            if code == 429:
                assert 1 <= int(headers["Retry-After"]) <= 5


# -- command line --------------------------------------------------------------------------


async def test_runs_from_the_command_line(session: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fake_segmind",
        "--shape",
        "ogg",
        "--api-key",
        "cli-key",
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        name, _, base_url = line.partition("=")
        assert name == "SEGMIND_BASE_URL"
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        async with session.post(
            base_url + "/gemini-2.5-flash-tts",
            headers={"x-api-key": "cli-key"},
            json={"text": "hi"},
        ) as resp:
            assert resp.status == 200
            assert resp.content_type == "audio/ogg"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
