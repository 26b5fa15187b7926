"""The client against hostile answers (issue 11, points 3 to 7): deeply nested JSON, redirects
that would carry the key away, audio links into the bot's own network, a deadline stretched by
each step, and compressed bodies that expand without end.

Links that must be refused are refused before any connection (addresses given literally, or
names a test resolver maps); everything fetched is served on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses
from yarl import URL

from bot import audio
from bot.audio import AudioFormat
from bot.errors import (
    AuthenticationError,
    BadAudioError,
    BadRequestError,
    RateLimitedError,
    SegmindConnectionError,
    SegmindError,
    SegmindTimeoutError,
    UnexpectedStatusError,
)
from bot.speech.request import build_request
from bot.synthesis.client import SegmindClient, Timeouts
from bot.synthesis.links import system_resolver
from tests.conftest import TEST_API_KEY
from tests.fake_segmind import FakeSegmind, wrong_content
from tests.hostile import nested_json, opus_bomb
from tests.opus_files import join_pages, split_pages
from tests.signals import tone

BASE = "http://segmind.test/v1"
URL_TTS = f"{BASE}/gemini-2.5-flash-tts"
REQUEST = build_request("Hello from the tests", voice="kore")
WAV = audio.encode_wav(tone(0.5))
NESTED = nested_json(60_000)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Names the test resolver knows; nothing here is ever contacted.
HOSTS = {"files.public.test": ["93.184.216.34"], "internal.test": ["10.1.2.3"]}


async def resolver(host: str, port: int) -> list[str]:
    if host not in HOSTS:
        raise OSError(f"unknown test host {host}")
    return HOSTS[host]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as m:
        yield m


@pytest.fixture
def client(session: aiohttp.ClientSession) -> SegmindClient:
    return SegmindClient(session, api_key=TEST_API_KEY, base_url=BASE, resolve=resolver)


def answer(response: Callable[[], web.StreamResponse]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return response()

    return handler


@asynccontextmanager
async def serve(routes: list[web.RouteDef]) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A throwaway server on 127.0.0.1: its root URL and the requests it received."""
    seen: list[web.Request] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(request)
        return await handler(request)  # type: ignore[no-any-return]

    app = web.Application(middlewares=[record])
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


# --- 3. every parse failure typed; the status decides, whatever the body -----------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [(429, RateLimitedError), (401, AuthenticationError), (400, BadRequestError)],
)
async def test_a_hostile_error_body_does_not_hide_the_status(
    mocked: Any, client: SegmindClient, status: int, expected: type[SegmindError]
) -> None:
    mocked.post(
        URL_TTS,
        status=status,
        body=NESTED,
        headers={"Content-Type": "application/json", "Retry-After": "7"},
    )
    with pytest.raises(expected) as caught:
        await client.synthesize(REQUEST)
    if isinstance(caught.value, RateLimitedError):
        assert caught.value.retry_after == pytest.approx(7, abs=1)


async def test_a_hostile_success_body_is_bad_audio(mocked: Any, client: SegmindClient) -> None:
    mocked.post(URL_TTS, body=NESTED, headers={"Content-Type": "application/json"})
    with pytest.raises(BadAudioError):
        await client.synthesize(REQUEST)
    mocked.post(URL_TTS, body=b"[" * 900 + b"]" * 900, headers={"Content-Type": "text/plain"})
    with pytest.raises(BadAudioError):
        await client.synthesize(REQUEST)


async def test_a_hostile_credits_answer_is_typed(mocked: Any, client: SegmindClient) -> None:
    mocked.get(f"{BASE}/get-user-credits", body=NESTED, content_type="application/json")
    with pytest.raises(BadAudioError):
        await client.get_credits()
    mocked.get(f"{BASE}/get-user-credits", status=401, body=NESTED)
    with pytest.raises(AuthenticationError):
        await client.get_credits()


# --- 4. the key stays on the configured origin --------------------------------------------------


async def test_the_balance_check_never_follows_a_redirect_with_the_key(
    session: aiohttp.ClientSession,
) -> None:
    async with serve(
        [web.get("/{tail:.*}", answer(lambda: web.json_response({"credits": 1})))]
    ) as (
        elsewhere,
        stolen,
    ):

        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"{elsewhere}/get-user-credits")

        async with serve([web.get("/v1/get-user-credits", moved)]) as (api, _):
            client = SegmindClient(session, api_key=TEST_API_KEY, base_url=f"{api}/v1")
            with pytest.raises(UnexpectedStatusError):
                await client.get_credits()
    assert stolen == []


async def test_the_key_is_sent_to_the_configured_origin_only(
    mocked: Any, client: SegmindClient
) -> None:
    link = "https://files.public.test/a.wav"
    mocked.post(URL_TTS, payload={"audio_url": link})
    mocked.get("https://93.184.216.34/a.wav", body=WAV, content_type="audio/wav")
    mocked.get(f"{BASE}/get-user-credits", payload={"credits": 1})
    await client.synthesize(REQUEST)
    await client.get_credits()
    keyed = {
        URL(str(url)).origin()
        for (_, url), requests in mocked.requests.items()
        for request in requests
        if "x-api-key" in (request.kwargs.get("headers") or {})
    }
    assert keyed == {URL(BASE).origin()}
    assert len(mocked.requests) == 3


async def test_a_key_straddling_the_cut_leaves_no_prefix(
    mocked: Any, client: SegmindClient
) -> None:
    message = "x" * 290 + " " + TEST_API_KEY + " and more"
    mocked.post(URL_TTS, status=400, payload={"error": message})
    with pytest.raises(BadRequestError) as caught:
        await client.synthesize(REQUEST)
    shown = caught.value.user_message + str(caught.value)
    assert TEST_API_KEY[:6] not in shown
    # A key the upstream itself truncated is redacted too.
    mocked.post(URL_TTS, status=400, payload={"error": f"bad key {TEST_API_KEY[:12]}…"})
    with pytest.raises(BadRequestError) as caught:
        await client.synthesize(REQUEST)
    assert TEST_API_KEY[:12] not in caught.value.user_message


# --- 5. audio links: public http(s) hosts only, no redirects, nothing echoed --------------------


@pytest.mark.parametrize(
    "link",
    [
        "http://127.0.0.1:9/a.wav",
        "http://localhost:9/a.wav",  # /etc/hosts, no network
        "http://[::1]:9/a.wav",
        "http://10.0.0.1/a.wav",
        "http://192.168.1.20/a.wav",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/a.wav",
        "http://224.0.0.1/a.wav",
        "http://0.0.0.0/a.wav",
        "http://[::ffff:10.0.0.1]/a.wav",
        "http://internal.test/a.wav",
        "http://nowhere.test/a.wav",
        "https://user:pw@files.public.test/a.wav",
        "ftp://files.public.test/a.wav",
    ],
)
async def test_links_into_private_networks_are_refused_before_connecting(
    session: aiohttp.ClientSession, mocked: Any, link: str
) -> None:
    client = SegmindClient(
        session,
        api_key=TEST_API_KEY,
        base_url=BASE,
        resolve=system_resolver if "localhost" in link else resolver,
    )
    mocked.post(URL_TTS, payload={"audio_url": link})
    with pytest.raises(BadAudioError):
        await client.synthesize(REQUEST)
    assert [method for method, _ in mocked.requests] == ["POST"]


async def test_loopback_links_are_fine_when_the_api_itself_is_on_loopback(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSegmind(api_key=TEST_API_KEY) as fake:
        fake.files["a.wav"] = WAV
        body = json.dumps({"audio_url": f"{fake.root_url}/files/a.wav"}).encode()
        fake.enqueue(wrong_content(body, "application/json"))
        client = SegmindClient(session, api_key=TEST_API_KEY, base_url=fake.base_url)
        result = await client.synthesize(REQUEST)
    assert result.format is AudioFormat.WAV
    assert fake.file_fetches == 1


async def test_a_link_that_redirects_or_answers_a_page_is_refused_without_echo(
    session: aiohttp.ClientSession,
) -> None:
    page = "PRIVATE-PAGE-" + "z" * 400

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/page")

    async with (
        serve(
            [
                web.get("/moved", moved),
                web.get(
                    "/page", answer(lambda: web.Response(text=page, content_type="text/plain"))
                ),
            ]
        ) as (files, seen),
        FakeSegmind(api_key=TEST_API_KEY) as fake,
    ):
        client = SegmindClient(session, api_key=TEST_API_KEY, base_url=fake.base_url)
        for path in ("moved", "page"):
            body = json.dumps({"audio_url": f"{files}/{path}"}).encode()
            fake.enqueue(wrong_content(body, "application/json"))
            with pytest.raises(BadAudioError) as caught:
                await client.synthesize(REQUEST)
            text = str(caught.value) + caught.value.user_message
            assert "PRIVATE" not in text
            assert "zzzz" not in text
    assert [r.path for r in seen] == ["/moved", "/page"]  # the redirect was not followed
    assert all("x-api-key" not in r.headers for r in seen)


# --- 6. one deadline for the whole call ----------------------------------------------------------


async def test_the_link_fetch_shares_the_call_deadline(session: aiohttp.ClientSession) -> None:
    async def slow_file(request: web.Request) -> web.Response:
        await asyncio.sleep(0.8)
        return web.Response(body=WAV, content_type="audio/wav")

    async with serve([web.get("/a.wav", slow_file)]) as (files, _):

        async def slow_answer(request: web.Request) -> web.Response:
            await asyncio.sleep(0.8)
            return web.json_response({"audio_url": f"{files}/a.wav"})

        async with serve([web.post("/v1/gemini-2.5-flash-tts", slow_answer)]) as (api, _):
            client = SegmindClient(
                session,
                api_key=TEST_API_KEY,
                base_url=f"{api}/v1",
                timeouts=Timeouts(request_timeout=1.0),
            )
            with pytest.raises(SegmindTimeoutError):
                await client.synthesize(REQUEST)


async def test_decoding_shares_the_call_deadline(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_probe = audio.probe

    def slow_probe(*args: Any, **kwargs: Any) -> audio.Audio:
        time.sleep(1.0)  # a decode that takes longer than the whole call may
        return real_probe(*args, **kwargs)

    monkeypatch.setattr(audio, "probe", slow_probe)
    async with serve(
        [web.post("/v1/gemini-2.5-flash-tts", answer(lambda: web.Response(body=WAV)))]
    ) as (api, _):
        client = SegmindClient(
            session,
            api_key=TEST_API_KEY,
            base_url=f"{api}/v1",
            timeouts=Timeouts(request_timeout=0.4),
        )
        with pytest.raises(SegmindTimeoutError):
            await client.synthesize(REQUEST)


# --- 7. a body that decompresses past aiohttp's cap is bad audio, not a dropped connection -----


@pytest.mark.parametrize("via_link", [False, True])
async def test_a_compression_bomb_is_bad_audio_not_a_connection_problem(
    session: aiohttp.ClientSession, via_link: bool
) -> None:
    bomb = gzip.compress(b"\0" * (40 << 20), compresslevel=9)  # 40 MiB from ~40 KB
    encoded = {"Content-Encoding": "gzip"}
    async with FakeSegmind(api_key=TEST_API_KEY) as fake:
        if via_link:
            fake.enqueue(
                wrong_content(
                    json.dumps({"audio_url": f"{fake.root_url}/files/bomb.wav"}).encode(),
                    "application/json",
                )
            )
            fake.files["bomb.wav"] = bomb
            fake.file_headers["bomb.wav"] = encoded
        else:
            fake.enqueue(wrong_content(bomb, "audio/wav", headers=encoded))
        client = SegmindClient(session, api_key=TEST_API_KEY, base_url=fake.base_url)
        with pytest.raises(SegmindError) as caught:
            await client.synthesize(REQUEST)
    assert isinstance(caught.value, BadAudioError)
    assert not isinstance(caught.value, SegmindConnectionError)
    assert not caught.value.retryable


# --- 8. an Ogg Opus answer is checked page by page, not decoded whole ---------------------------


def _damaged(data: bytes) -> bytes:
    broken = bytearray(data)
    broken[-1] ^= 0x10  # the last page's last byte: its checksum no longer holds
    return bytes(broken)


def _lying(data: bytes) -> bytes:
    pages = split_pages(data)
    pages[-1] = pages[-1].with_(granule=pages[-1].granule + 48_000)  # a second it does not hold
    return join_pages(pages)


async def test_an_ogg_opus_answer_is_measured_without_decoding_it_whole(
    mocked: Any, client: SegmindClient
) -> None:
    ogg = audio.encode_ogg_opus(tone(2.5))
    mocked.post(URL_TTS, body=ogg, headers={"Content-Type": "audio/ogg"})
    result = await client.synthesize(REQUEST)
    assert (result.data, result.format, result.duration) == (ogg, AudioFormat.OGG, 2.5)
    assert result.decoded is None


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (_damaged, "checksum"),
        (_lying, "claims"),
        (lambda data: data[:-7], "past the end"),
        (lambda data: opus_bomb(1745.0, channels=1, claim_seconds=1.0), "MiB"),
    ],
)
async def test_a_hostile_ogg_opus_answer_is_bad_audio(
    mocked: Any, client: SegmindClient, forge: Callable[[bytes], bytes], reason: str
) -> None:
    body = forge(audio.encode_ogg_opus(tone(2.5)))
    mocked.post(URL_TTS, body=body, headers={"Content-Type": "audio/ogg"})
    with pytest.raises(BadAudioError, match=reason) as caught:
        await client.synthesize(REQUEST)
    assert not caught.value.retryable
