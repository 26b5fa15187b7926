"""One fault, one error type, whichever protocol speaks to Segmind.

The scheduler decides what to do from the error's type alone (retry, wait, halt, give up),
and members read its line: so v1 (one call) and v2 (submit, poll, fetch) must raise the very
same typed error for the same fault. Every fault here runs against both, over real HTTP to
the fake server: timeouts while connecting, answering and fetching the audio link, slow
bodies, each status that means something, bad and oversized bodies, undecodable audio.

Both protocols deliver a link to the audio (v1 as `{"audio_url": …}`, v2 as the job's
output), so a fault on the link is the same fault for both.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

import bot.audio
import bot.synthesis.client
from bot.errors import (
    AudioDeadlineError,
    AuthenticationError,
    BadAudioError,
    BadRequestError,
    JobFailedError,
    MethodNotAllowedError,
    ModelRetiredError,
    OutOfCreditsError,
    PermissionDeniedError,
    RateLimitedError,
    SegmindConnectionError,
    SegmindError,
    SegmindTimeoutError,
    ServerError,
    UnexpectedStatusError,
)
from bot.speech.request import build_request
from bot.synthesis.client import SegmindClient, Timeouts
from bot.synthesis.client_v2 import SegmindV2Client
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY

REQUEST = build_request("The same fault, the same error.", voice="Kore")
#: Every call step is bounded by REQUEST_TIMEOUT; a v2 job by its own, longer deadline.
TIMEOUTS = Timeouts(
    request_timeout=0.4, connect_timeout=0.3, job_timeout=1.5, first_poll=0.01, last_poll=0.05
)
#: Longer than any bound above: what a stuck upstream or link looks like from here.
STUCK = 3.0
SMALL_CAP = 256 * 1024  # above a clip of the fake's, below what the faults send
PROTOCOLS = ["v1", "v2"]

Build = Callable[..., SegmindClient]


@pytest.fixture
async def fake() -> AsyncIterator[fs.FakeSegmind]:
    async with fs.FakeSegmind(api_key=TEST_API_KEY, shape=fs.Shape.JSON_URL) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(params=PROTOCOLS)
def build(request: pytest.FixtureRequest, session: aiohttp.ClientSession) -> Build:
    """A client of the protocol under test, on `base_url` (the fake's by default)."""

    def make(base_url: str, on: aiohttp.ClientSession = session) -> SegmindClient:
        cls = SegmindV2Client if request.param == "v2" else SegmindClient
        return cls(on, api_key=TEST_API_KEY, base_url=base_url, timeouts=TIMEOUTS)

    return make


async def failure(client: SegmindClient) -> SegmindError:
    """The typed error `synthesize` raised: anything untyped fails the test here."""
    with pytest.raises(SegmindError) as caught:
        await asyncio.wait_for(client.synthesize(REQUEST), 10)
    return caught.value


def test_both_protocols_are_under_test(build: Build) -> None:
    assert build("http://127.0.0.1:9/v1").endpoint.startswith("http://127.0.0.1:9/v")


# --- the answer to the call (v1) or to the submit (v2) ------------------------------------------

ANSWER_FAULTS: dict[str, tuple[Callable[[], fs.Fault], type[SegmindError]]] = {
    "no answer in time": (lambda: fs.delay(STUCK), SegmindTimeoutError),
    "a body that trickles past the deadline": (lambda: fs.slow_body(STUCK), SegmindTimeoutError),
    "a dropped connection": (fs.drop, SegmindConnectionError),
    "400": (lambda: fs.status(400, "text is required"), BadRequestError),
    "401": (lambda: fs.status(401), AuthenticationError),
    "402": (lambda: fs.status(402, "Payment required: no credits left"), OutOfCreditsError),
    "403": (lambda: fs.status(403), PermissionDeniedError),
    "405": (lambda: fs.status(405, body=b"<html>Method Not Allowed</html>"), MethodNotAllowedError),
    "406": (lambda: fs.status(406, "Insufficient credits"), OutOfCreditsError),
    "410": (lambda: fs.status(410, "model retired"), ModelRetiredError),
    "418": (lambda: fs.status(418), UnexpectedStatusError),
    "422": (lambda: fs.status(422, "bad input"), JobFailedError),
    "500": (lambda: fs.status(500), ServerError),
    "502 as an HTML page": (
        lambda: fs.status(502, body=b"<html><title>Bad gateway</title></html>"),
        ServerError,
    ),
    "503": (lambda: fs.status(503), ServerError),
    "504": (lambda: fs.status(504), ServerError),
    "JSON that does not parse": (
        lambda: fs.wrong_content(b'{"audio_url": "http://', "application/json"),
        BadAudioError,
    ),
    "a body that will not decompress": (
        lambda: fs.wrong_content(
            b"this is not gzip", "application/json", headers={"Content-Encoding": "gzip"}
        ),
        BadAudioError,
    ),
    "a body declared too large": (
        lambda: fs.wrong_content(b"{" + b" " * (2 * SMALL_CAP) + b"}", "application/json"),
        BadAudioError,
    ),
}


@pytest.mark.parametrize("name", sorted(ANSWER_FAULTS))
async def test_a_fault_in_the_answer_is_the_same_error(
    fake: fs.FakeSegmind, build: Build, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(bot.synthesis.client, "MAX_BODY_BYTES", SMALL_CAP)
    fault, expected = ANSWER_FAULTS[name]
    fake.enqueue(fault())
    error = await failure(build(fake.base_url))
    assert type(error) is expected, repr(error)
    assert fake.tts_calls == 1


@pytest.mark.parametrize(
    ("styles", "wait"),
    [
        (("seconds",), 7.0),
        (("http-date",), 7.0),
        (("iso",), 7.0),
        (("epoch",), 7.0),
        (("none",), None),
    ],
)
async def test_a_429_is_the_same_error_with_the_same_wait(
    fake: fs.FakeSegmind, build: Build, styles: tuple[fs.RateLimitStyle, ...], wait: float | None
) -> None:
    fake.enqueue(fs.rate_limited(retry_after=7.0, style=styles, remaining=None))
    error = await failure(build(fake.base_url))
    assert type(error) is RateLimitedError
    assert isinstance(error, RateLimitedError)
    if wait is None:
        assert error.retry_after is None  # the scheduler backs off on its own
    else:
        assert error.retry_after == pytest.approx(wait, abs=1.5)


# --- reaching Segmind at all --------------------------------------------------------------------


async def test_nothing_listening_is_the_same_error(build: Build) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await failure(build(f"http://127.0.0.1:{port}/v1"))
    assert type(error) is SegmindConnectionError


class NeverResolves(AbstractResolver):
    """A name lookup that never answers: the connection is never made."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        return None


async def test_a_connection_that_never_opens_is_the_same_error(build: Build) -> None:
    connector = aiohttp.TCPConnector(resolver=NeverResolves())
    async with aiohttp.ClientSession(connector=connector) as stuck:
        error = await failure(build("http://segmind.test:9/v1", on=stuck))
    assert type(error) is SegmindTimeoutError


# --- the audio: its link, its body, its decoding ------------------------------------------------

LINK_FAULTS: dict[str, tuple[Callable[[], list[fs.Fault]], type[SegmindError]]] = {
    "a link that does not answer in time": (lambda: [fs.delay(STUCK)], SegmindTimeoutError),
    "a link whose body trickles past the deadline": (
        lambda: [fs.slow_body(STUCK)],
        SegmindTimeoutError,
    ),
    # Twice: aiohttp itself tries a GET once more when a reused connection drops.
    "a link that drops the connection": (lambda: [fs.drop(), fs.drop()], BadAudioError),
    "a link answering 404": (lambda: [fs.status(404, "No such file")], BadAudioError),
    "a link answering 503": (lambda: [fs.status(503)], BadAudioError),
    "undecodable audio": (
        lambda: [fs.wrong_content(b"RIFF\x24\x00\x00\x00WAVEfmt garbage", "audio/wav")],
        BadAudioError,
    ),
    "an HTML page instead of audio": (
        lambda: [fs.wrong_content(b"<html>Not audio</html>", "text/html")],
        BadAudioError,
    ),
    "audio too large": (
        lambda: [fs.wrong_content(b"\0" * (2 * SMALL_CAP), "audio/wav")],
        BadAudioError,
    ),
}


@pytest.mark.parametrize("name", sorted(LINK_FAULTS))
async def test_a_fault_on_the_audio_link_is_the_same_error(
    fake: fs.FakeSegmind, build: Build, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(bot.synthesis.client, "MAX_BODY_BYTES", SMALL_CAP)
    faults, expected = LINK_FAULTS[name]
    fake.file_faults.extend(faults())
    error = await failure(build(fake.base_url))
    assert type(error) is expected, repr(error)
    assert fake.file_fetches >= 1
    assert fake.tts_calls == 1  # the job (or the call) was made once, whatever the link did


async def test_decoding_that_reaches_the_deadline_is_the_same_error(
    fake: fs.FakeSegmind, build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decoder checks the call's deadline between packets and stops with
    AudioDeadlineError: a timeout like any other, never a bare TimeoutError."""

    def out_of_time(*args: Any, **kwargs: Any) -> None:
        raise AudioDeadlineError("the call's deadline passed while decoding")

    monkeypatch.setattr(bot.audio, "probe", out_of_time)
    error = await failure(build(fake.base_url))
    assert type(error) is SegmindTimeoutError


async def test_without_a_fault_both_deliver(fake: fs.FakeSegmind, build: Build) -> None:
    """The faults above are faults: the same set-up with none delivers the audio."""
    audio = await build(fake.base_url).synthesize(REQUEST)
    assert audio.duration == pytest.approx(fake.expected_duration(REQUEST.text), abs=0.05)
    assert fake.file_fetches == 1
    assert json.loads(json.dumps(fake.statuses())) == [200]
