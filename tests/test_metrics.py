"""The metrics endpoint, scraped over HTTP and parsed with Prometheus' own text parser, after
real calls through the real services against the fake Segmind server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings
from bot.health import Heartbeat, Status
from bot.metrics import Metrics, MetricsServer, VoiceFigures, start_metrics
from bot.services import Services, open_services
from bot.speech.access import Requester
from bot.speech.request import build_request
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY
from tests.deploy_files import missing_from, referenced

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def fake() -> AsyncIterator[fs.FakeSegmind]:
    async with fs.FakeSegmind(api_key=TEST_API_KEY) as server:
        yield server


@pytest.fixture
async def services(
    fake: fs.FakeSegmind, make_settings: Callable[..., Settings]
) -> AsyncIterator[Services]:
    settings = make_settings(
        segmind_base_url=fake.base_url, segmind_rpm=600, backoff_base=0.01, user_cooldown=0
    )
    opened = await open_services(settings)
    try:
        yield opened
    finally:
        await opened.close()


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


def parse(text: str) -> Scrape:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_after_real_calls(services: Services, fake: fs.FakeSegmind) -> None:
    server = MetricsServer(
        Metrics(services, voice=lambda: VoiceFigures(connections=2, backlog=5)),
        health=lambda: Status(gateway_connected=True),
    )
    await server.start("127.0.0.1", 0)
    try:
        source = services.speech.source
        who = Requester(1, cooldown=0)
        fake.enqueue(fs.rate_limited(retry_after=0.2))
        request = build_request("Hello there, metrics.")
        first, second = await asyncio.gather(source.begin(request, who), source.begin(request, who))
        await first.result()
        await second.result()
        await (await source.begin(request, who)).result()  # From the cache: no call.
        other = build_request("Something else entirely.")
        await (await source.begin(other, who)).result()

        status, content_type, text = await scrape(server.port)
        assert status == 200
        assert content_type.startswith("text/plain")
        found = parse(text)
        assert found[("tts_api_calls_total", (("status", "429"),))] == 1
        assert found[("tts_api_calls_total", (("status", "200"),))] == 2
        assert found[("tts_api_call_seconds_count", ())] == 3
        assert found[("tts_requests_total", (("outcome", "served"),))] == 2
        assert found[("tts_rate_limited_total", ())] == 1
        assert found[("tts_coalesced_total", ())] == 1
        assert found[("tts_cache_answered_total", ())] == 1
        assert found[("tts_cache_hits_total", (("tier", "memory"),))] == 1
        assert found[("tts_cache_bytes", (("tier", "memory"),))] > 0
        assert found[("tts_cache_items", (("tier", "memory"),))] == 2
        assert found[("tts_queue_length", ())] == 0
        assert found[("tts_queue_oldest_wait_seconds", ())] == 0
        assert found[("tts_speech_halted", ())] == 0
        assert found[("tts_credits_remaining", ())] == pytest.approx(fake.credits)
        assert fake.credits < 100
        assert found[("tts_voice_connections", ())] == 2
        assert found[("tts_voice_backlog", ())] == 5
        # Two calls started (the 429's retry is the same request, not a second wait), and
        # nothing was held up: both began within the first bucket.
        assert found[("tts_queue_wait_seconds_count", ())] == 2
        assert found[("tts_queue_wait_seconds_bucket", (("le", "0.5"),))] == 2
        assert TEST_API_KEY not in text

        status, _, body = await scrape(server.port, "/healthz")
        assert status == 200
        assert '"healthy": true' in body
    finally:
        await server.close()


async def test_queue_length_and_wait_while_requests_wait(
    fake: fs.FakeSegmind, make_settings: Callable[..., Settings]
) -> None:
    fake.latency = 0.5
    # A cap of 10 calls in flight, so 20 of the 30 requests must wait in the queue.
    settings = make_settings(
        segmind_base_url=fake.base_url, segmind_rpm=600, user_cooldown=0, max_concurrency=10
    )
    services = await open_services(settings)
    server = MetricsServer(Metrics(services))
    await server.start("127.0.0.1", 0)
    try:
        requests = [build_request(f"Request number {n}.") for n in range(30)]
        tickets = [
            services.scheduler.submit(request, Requester(n, cooldown=0))
            for n, request in enumerate(requests)
        ]
        await asyncio.sleep(0.3)
        found = parse((await scrape(server.port))[2])
        assert found[("tts_queue_length", ())] + found[("tts_calls_running", ())] == 30
        assert found[("tts_calls_running", ())] == services.settings.max_concurrency
        assert 0.25 <= found[("tts_queue_oldest_wait_seconds", ())] < 5
        assert found[("tts_queue_length", ())] == 20
        # Calls only start now: nothing waited long yet, and the queue is no histogram.
        assert found[("tts_queue_wait_seconds_count", ())] == 10
        assert found[("tts_queue_wait_seconds_bucket", (("le", "0.5"),))] == 10
        await asyncio.gather(*(ticket.result() for ticket in tickets))
        found = parse((await scrape(server.port))[2])
        # Each request counted once, when its call started: the second ten waited for one
        # round of 0.5 s calls, the last ten for two.
        assert found[("tts_queue_wait_seconds_count", ())] == 30
        assert found[("tts_queue_wait_seconds_bucket", (("le", "0.5"),))] == 10
        assert found[("tts_queue_wait_seconds_bucket", (("le", "+Inf"),))] == 30
        assert found[("tts_queue_wait_seconds_sum", ())] >= 10 * 0.5 + 10 * 1.0
    finally:
        await server.close()
        await services.close()


async def test_a_halt_is_unhealthy_and_shown(services: Services, fake: fs.FakeSegmind) -> None:
    fake.enqueue(fs.status(401, "bad key"))
    server = MetricsServer(
        Metrics(services),
        health=lambda: Status(
            gateway_connected=True,
            halted=str(services.scheduler.halted) if services.scheduler.halted else None,
        ),
    )
    await server.start("127.0.0.1", 0)
    try:
        ticket = services.scheduler.submit(build_request("Hi."), Requester(1, cooldown=0))
        with pytest.raises(Exception, match="401"):
            await ticket.result()
        found = parse((await scrape(server.port))[2])
        assert found[("tts_speech_halted", ())] == 1
        assert found[("tts_api_calls_total", (("status", "401"),))] == 1
        status, _, body = await scrape(server.port, "/healthz")
        assert status == 503
        assert "paused" in body
    finally:
        await server.close()


async def test_off_by_default_and_on_127_0_0_1(services: Services) -> None:
    assert services.settings.metrics_port is None
    assert await start_metrics(services) is None
    assert services.settings.metrics_host == "127.0.0.1"


def labels_by_sample(text: str) -> dict[str, set[str]]:
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


async def test_every_metric_the_dashboard_and_the_alerts_name_is_in_a_real_scrape(
    services: Services, fake: fs.FakeSegmind
) -> None:
    heartbeat = Heartbeat(
        services.settings.data_dir / "health.json", lambda: Status(gateway_connected=True)
    )
    await heartbeat.beat()
    figures = VoiceFigures(
        connections=1,
        backlog=3,
        narration_backlog=4,
        narration_oldest_wait=12.5,
        narration_stale_skipped=2,
    )
    server = MetricsServer(
        Metrics(
            services,
            voice=lambda: figures,
            health=lambda: Status(gateway_connected=True),
            heartbeat=heartbeat,
        )
    )
    await server.start("127.0.0.1", 0)
    try:
        source, who = services.speech.source, Requester(1, cooldown=0)
        fake.enqueue(fs.rate_limited(retry_after=0.1))
        for text in ("One for the dashboard.", "Two for the alerts."):
            await (await source.begin(build_request(text), who)).result()
        text = (await scrape(server.port))[2]
    finally:
        await server.close()
    assert len(referenced()) >= 20
    assert missing_from(labels_by_sample(text)) == []
    found = parse(text)
    assert found[("tts_api_calls_total", (("status", "429"),))] == 1
    assert found[("tts_gateway_connected", ())] == 1
    assert found[("tts_heartbeat_timestamp_seconds", ())] == heartbeat.last_beat > 0
    assert found[("tts_narration_backlog", ())] == 4
    assert found[("tts_narration_oldest_wait_seconds", ())] == 12.5
    assert found[("tts_narration_stale_skipped_total", ())] == 2
