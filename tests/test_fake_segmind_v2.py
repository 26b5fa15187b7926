"""The fake server's v2 side, driven with plain aiohttp: the double must behave as documented
before the client is tested against it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot import audio
from tests import fake_segmind as fs

KEY = "v2-key"
TEXT = "Hello from version two."
BODY: dict[str, Any] = {"text": TEXT, "voice_1": "Kore", "temperature": 0.4}


@pytest.fixture
async def fake() -> AsyncIterator[fs.FakeSegmind]:
    async with fs.FakeSegmind(api_key=KEY, shape=fs.Shape.OGG, latency=0.2) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"x-api-key": KEY}) as session:
        yield session


async def submit(fake: fs.FakeSegmind, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.post(fake.root_url + fs.V2_TTS_PATH, json=BODY) as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer


async def poll(http: aiohttp.ClientSession, url: str) -> str:
    for _ in range(100):
        async with http.get(url) as response:
            state: str = (await response.json())["status"]
        if state in {"COMPLETED", "FAILED"}:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError("the job never finished")


async def test_submit_poll_and_fetch_the_result(
    fake: fs.FakeSegmind, http: aiohttp.ClientSession
) -> None:
    job = await submit(fake, http)
    assert job["status"] == "QUEUED"
    assert job["poll_url"].startswith(fake.root_url)
    async with http.get(job["response_url"]) as early:
        assert early.status == 202  # Not done yet: no result, nothing billed.
    assert await poll(http, job["status_url"]) == "COMPLETED"
    async with http.get(job["response_url"]) as response:
        result = await response.json()
    assert result["metrics"]["cost"] == fake.cost
    assert result["metrics"]["remaining_credits"] == fake.credits == pytest.approx(100 - 0.005)
    async with http.get(result["output"]) as file:
        clip = audio.probe(await file.read(), audio.AudioFormat.OGG)
    assert clip.duration == pytest.approx(fake.expected_duration(TEXT), abs=0.05)
    async with http.get(job["response_url"]):
        pass
    assert fake.credits == pytest.approx(100 - 0.005)  # Billed once, however often fetched.
    assert fake.tts_calls == 1


async def test_base64_output_and_a_failed_job(
    fake: fs.FakeSegmind, http: aiohttp.ClientSession
) -> None:
    fake.v2.output = "base64"
    job = await submit(fake, http)
    await poll(http, job["status_url"])
    async with http.get(job["response_url"]) as response:
        data = base64.b64decode((await response.json())["output"])
    assert audio.sniff_format(None, data[:64]) is audio.AudioFormat.OGG
    fake.v2.fail_next = 1
    failing = await submit(fake, http)
    assert await poll(http, failing["status_url"]) == "FAILED"
    async with http.get(failing["response_url"]) as response:
        assert response.status == 422
    assert fake.credits == pytest.approx(100 - 0.005)  # A failed job is not billed.


async def test_an_accepted_submit_can_be_dropped_and_the_job_still_runs(
    fake: fs.FakeSegmind, http: aiohttp.ClientSession
) -> None:
    fake.v2.drop_after_accept = 1
    with pytest.raises(aiohttp.ClientError):
        await submit(fake, http)
    (job_id,) = fake.v2.jobs
    url = f"{fake.root_url}/v2/requests/{job_id}/status"
    assert await poll(http, url) == "COMPLETED"


async def test_results_expire_and_keys_and_faults_apply(
    fake: fs.FakeSegmind, http: aiohttp.ClientSession
) -> None:
    fake.v2.poll_origin = "http://elsewhere.invalid"
    job = await submit(fake, http)
    assert job["poll_url"].startswith("http://elsewhere.invalid/")
    own = f"{fake.root_url}/v2/requests/{job['request_id']}"
    async with aiohttp.ClientSession() as stranger, stranger.get(own) as response:
        assert response.status == 401
    fake.v2.poll_faults.append(fs.status(503))
    async with http.get(own + "/status") as response:
        assert response.status == 503
    fake.v2.result_ttl = 0.0
    async with http.get(own + "/status") as response:
        assert response.status == 404
    fake.enqueue(fs.status(500))
    async with http.post(fake.root_url + fs.V2_TTS_PATH, json=BODY) as response:
        assert response.status == 500
    assert len(fake.v2.jobs) == 1  # The failed submit made no job.
