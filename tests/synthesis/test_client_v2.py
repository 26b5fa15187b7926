"""The v2 client (submit once, poll the job) against the fake server over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.audio import AudioFormat
from bot.config import load_settings
from bot.errors import (
    AuthenticationError,
    JobFailedError,
    JobLostError,
    JobTimeoutError,
    MethodNotAllowedError,
    ModelRetiredError,
    RateLimitedError,
    ServerError,
)
from bot.speech.access import Requester
from bot.speech.request import build_request
from bot.synthesis.client import CallRecord, SegmindClient, Timeouts
from bot.synthesis.client_v2 import MAX_MISSING_POLLS, SegmindV2Client
from bot.synthesis.scheduler import Scheduler, SchedulerConfig
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY

TEXT = "Version two makes the same speech."
REQUEST = build_request(TEXT, voice="Kore")
QUICK = {"first_poll": 0.02, "last_poll": 0.1}


@pytest.fixture
async def fake() -> AsyncIterator[fs.FakeSegmind]:
    async with fs.FakeSegmind(api_key=TEST_API_KEY, shape=fs.Shape.OGG, latency=0.15) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def make_client(
    fake: fs.FakeSegmind, session: aiohttp.ClientSession
) -> Callable[..., SegmindV2Client]:
    def build(**timeouts: Any) -> SegmindV2Client:
        return SegmindV2Client(
            session,
            api_key=TEST_API_KEY,
            base_url=fake.base_url,
            timeouts=Timeouts(**{**QUICK, **timeouts}),
        )

    return build


def test_settings_choose_the_protocol(session: aiohttp.ClientSession) -> None:
    v2 = load_settings(None, segmind_api_key="k", segmind_api="v2", segmind_job_timeout=42)
    client = SegmindClient.from_settings(session, v2)
    assert isinstance(client, SegmindV2Client)
    assert client.timeouts.job_timeout == 42
    assert client.endpoint == "https://api.segmind.com/v2/gemini-2.5-flash-tts"
    v1 = SegmindClient.from_settings(session, load_settings(None, segmind_api_key="k"))
    assert type(v1) is SegmindClient


@pytest.mark.parametrize("shape", [fs.Shape.WAV, fs.Shape.MP3, fs.Shape.OGG])
@pytest.mark.parametrize("output", ["url", "base64"])
async def test_submit_once_poll_and_deliver(
    fake: fs.FakeSegmind,
    make_client: Callable[..., SegmindV2Client],
    shape: fs.Shape,
    output: Any,
) -> None:
    fake.shape, fake.v2.output = shape, output
    client = make_client()
    records: list[CallRecord] = []
    client.add_listener(records.append)
    audio = await client.synthesize(REQUEST)
    assert audio.format is AudioFormat(shape.value)
    assert audio.duration == pytest.approx(fake.expected_duration(TEXT), abs=0.05)
    assert fake.tts_calls == 1
    assert fake.requests[0].json_body == {"text": TEXT, "voice_1": "Kore", "temperature": 0.4}
    assert fake.v2.status_polls >= 1
    assert client.remaining_credits == pytest.approx(100 - 0.005)
    ((record,),) = [records]
    assert (record.status, record.cost, record.error) == (200, 0.005, None)
    assert record.request_id in fake.v2.jobs


async def test_drops_and_server_errors_while_polling_never_submit_again(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client]
) -> None:
    fake.v2.poll_faults.extend([fs.drop(), fs.status(503), fs.drop(), fs.status(502)])
    audio = await make_client().synthesize(REQUEST)
    assert audio.duration == pytest.approx(fake.expected_duration(TEXT), abs=0.05)
    assert fake.tts_calls == 1
    assert not fake.v2.poll_faults  # Every fault was met, and polled through.


async def test_a_failed_job_is_a_clear_error_and_not_billed(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client]
) -> None:
    fake.v2.fail_next = 1
    with pytest.raises(JobFailedError) as info:
        await make_client().synthesize(REQUEST)
    assert not info.value.retryable
    assert "Generation failed" in str(info.value)
    assert fake.tts_calls == 1
    assert fake.credits == 100


async def test_a_poll_url_on_another_origin_is_not_followed(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client]
) -> None:
    async with fs.FakeSegmind(api_key=TEST_API_KEY) as elsewhere:
        fake.v2.poll_origin = elsewhere.root_url
        await make_client().synthesize(REQUEST)
        # The key was never sent there: the job was polled on the configured origin.
        assert elsewhere.v2.status_polls == elsewhere.v2.result_fetches == 0
    assert fake.v2.status_polls >= 1


async def test_a_job_past_the_deadline_is_a_clear_error(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client]
) -> None:
    fake.latency = 5.0
    with pytest.raises(JobTimeoutError, match="did not finish in time") as info:
        await make_client(job_timeout=0.3).synthesize(REQUEST)
    assert not info.value.retryable  # The scheduler must not pay for it again.
    assert fake.tts_calls == 1


@pytest.mark.parametrize("spelling", ["lower", "title"])
async def test_statuses_are_read_in_any_case(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client], spelling: Any
) -> None:
    """ "completed" in the result document is finished too: read as unfinished, the paid
    job would be polled until its deadline and lost."""
    fake.v2.spelling = spelling
    audio = await make_client(job_timeout=3.0).synthesize(REQUEST)
    assert audio.duration == pytest.approx(fake.expected_duration(TEXT), abs=0.05)
    assert fake.v2.result_fetches == 1


async def test_a_failed_job_spelled_in_lower_case_is_a_failed_job(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client]
) -> None:
    fake.v2.spelling, fake.v2.fail_next = "lower", 1
    with pytest.raises(JobFailedError, match="Generation failed"):
        await make_client(job_timeout=3.0).synthesize(REQUEST)


async def test_a_job_not_yet_visible_after_its_submit_is_polled_until_it_is(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client]
) -> None:
    """A 404 on the first polls right after the submit: the job is not visible yet on the
    polling side. Polled through (bounded), never re-submitted."""
    fake.v2.hidden_polls = MAX_MISSING_POLLS - 1
    audio = await make_client().synthesize(REQUEST)
    assert audio.duration == pytest.approx(fake.expected_duration(TEXT), abs=0.05)
    assert fake.tts_calls == 1
    assert fake.v2.status_polls >= MAX_MISSING_POLLS


async def test_a_job_never_visible_is_given_up_as_lost_after_bounded_polls(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client]
) -> None:
    fake.v2.hidden_polls = 1_000
    with pytest.raises(JobLostError, match=f"first {MAX_MISSING_POLLS} polls") as info:
        await make_client().synthesize(REQUEST)
    assert not info.value.retryable  # A new submit might be paid a second time.
    assert "lost track" in info.value.user_message
    assert fake.v2.status_polls == MAX_MISSING_POLLS
    assert fake.tts_calls == 1


async def test_a_result_missing_for_a_while_once_done_is_still_delivered(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client]
) -> None:
    """The job was seen, said COMPLETED, then its result answered 404: a paid result is
    not thrown away on the first 404."""
    fake.v2.result_faults.extend(fs.status(404) for _ in range(MAX_MISSING_POLLS - 1))
    audio = await make_client().synthesize(REQUEST)
    assert audio.duration == pytest.approx(fake.expected_duration(TEXT), abs=0.05)
    assert fake.v2.result_fetches == MAX_MISSING_POLLS
    assert fake.tts_calls == 1
    assert fake.credits == pytest.approx(100 - fake.cost)  # paid once, delivered once


async def test_a_result_that_stays_missing_is_a_clear_error_not_a_wait_until_the_deadline(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client]
) -> None:
    """The status keeps saying COMPLETED between the result's 404s: that must not reset the
    count, or the job would be polled until its deadline."""
    fake.v2.result_faults.extend(fs.status(404) for _ in range(100))
    with pytest.raises(JobLostError, match="answered earlier polls") as info:
        await make_client(job_timeout=30.0).synthesize(REQUEST)
    assert "its result is lost" in str(info.value)
    assert fake.v2.result_fetches == MAX_MISSING_POLLS
    assert fake.tts_calls == 1


async def test_a_result_expired_upstream_is_lost_after_bounded_polls(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client]
) -> None:
    """Segmind keeps results an hour; one gone sooner answers 404 from the first poll on."""
    fake.v2.result_ttl = 0.0
    with pytest.raises(JobLostError):
        await make_client().synthesize(REQUEST)
    assert fake.tts_calls == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (fs.status(401), AuthenticationError),
        (fs.status(405, body=b"<html>Method Not Allowed</html>"), MethodNotAllowedError),
        (fs.status(410, "model retired"), ModelRetiredError),
        (fs.status(422, "bad input"), JobFailedError),
        (fs.rate_limited(retry_after=3.0), RateLimitedError),
        (fs.status(502), ServerError),
    ],
)
async def test_a_refused_submit_is_typed(
    fake: fs.FakeSegmind,
    make_client: Callable[..., SegmindV2Client],
    fault: fs.Fault,
    error: type[Exception],
) -> None:
    fake.enqueue(fault)
    with pytest.raises(error):
        await make_client().synthesize(REQUEST)
    assert fake.tts_calls == 1
    assert not fake.v2.jobs  # Refused before a job existed: nothing to poll, nothing paid.


async def test_through_the_scheduler_a_failed_submit_is_retried_once_accepted_never(
    fake: fs.FakeSegmind, make_client: Callable[..., SegmindV2Client]
) -> None:
    fake.enqueue(fs.status(502), fs.drop())
    fake.v2.poll_faults.extend([fs.drop(), fs.status(500)])
    config = SchedulerConfig(rpm=600, backoff_base=0.01, backoff_max=0.05, user_cooldown=0)
    scheduler = Scheduler(make_client().synthesize, config)
    scheduler.start()
    try:
        ticket = scheduler.submit(REQUEST, Requester(1))
        audio = await asyncio.wait_for(ticket.result(), 20)
    finally:
        await scheduler.close(grace=0)
    assert audio.duration == pytest.approx(fake.expected_duration(TEXT), abs=0.05)
    assert fake.statuses() == [502, None, 200]  # Two refused submits, then one job.
    assert len(fake.v2.jobs) == 1
