"""Schedulers in separate "processes" (separate Redis clients) on one key pace it together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from bot.audio import Audio
from bot.errors import RateLimitedError
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.cluster import RedisLimiter, key_prefix
from bot.synthesis.scheduler import Scheduler, SchedulerConfig, Ticket
from tests.servers import free_port
from tests.synthesis.scheduler.fakes import AUDIO

KEY = "sk-cluster-key"


class Server:
    """A synthesize that holds every call until released, counting the calls it got."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()
        self.refuse: float | None = None  # answer 429 with this reset, once

    async def synthesize(self, request: SpeechRequest) -> Audio:
        self.calls.append(request.text)
        if self.refuse is not None:
            retry_after, self.refuse = self.refuse, None
            error = RateLimitedError(status=429)
            error.retry_after = retry_after
            raise error
        await self.release.wait()
        return AUDIO


Build = Callable[..., Scheduler]


@pytest.fixture
async def build(redis_url: str) -> AsyncIterator[Build]:
    made: list[tuple[Scheduler, Redis]] = []

    def make(server: Server, *, rpm: int = 3) -> Scheduler:
        client: Redis = Redis.from_url(redis_url)
        config = SchedulerConfig(rpm=rpm, window=60.0, user_cooldown=0, initial_latency=1.0)
        gate = RedisLimiter(client, api_key=KEY, span=config.span)
        scheduler = Scheduler(server.synthesize, config, gate=gate)
        scheduler.start()
        made.append((scheduler, client))
        return scheduler

    yield make
    for scheduler, client in made:
        await scheduler.close(grace=0)
        await client.aclose()


def submit(scheduler: Scheduler, count: int, base: int) -> list[Ticket]:
    return [
        scheduler.submit(SpeechRequest(text=f"clip {base + i}"), Requester(base + i))
        for i in range(count)
    ]


async def until(condition: Callable[[], bool]) -> None:
    """Poll: the conditions are the scheduler's and the server's state, not events."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def quiet() -> None:
    """Long enough for a dispatcher that would wrongly start more calls to do so."""
    await asyncio.sleep(0.2)


async def test_two_processes_start_no_more_than_the_key_allows(build: Build) -> None:
    server = Server()
    first, second = build(server), build(server)
    submit(first, 3, 100)
    submit(second, 3, 200)
    await until(lambda: len(server.calls) >= 3)
    await quiet()
    assert len(server.calls) == 3
    assert first.stats.queued + second.stats.queued == 3


async def test_a_429_in_one_process_pauses_the_other(build: Build, redis_url: str) -> None:
    server = Server()
    server.refuse = 30.0
    first = build(server, rpm=50)
    [hit] = submit(first, 1, 100)
    await until(lambda: first.paused_until is not None)
    await until(lambda: hit.state == "queued")
    # The pause is shared in the background, so as not to hold the hit process up.
    async with Redis.from_url(redis_url) as client, asyncio.timeout(10):
        while not await client.exists(key_prefix(KEY) + "pause"):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    second = build(server, rpm=50)
    submit(second, 1, 200)
    await until(lambda: second.paused_until is not None)
    await quiet()
    assert server.calls == ["clip 100"]
    assert second.stats.queued == 1


async def test_a_limit_learned_elsewhere_is_adopted(build: Build, redis_url: str) -> None:
    async with Redis.from_url(redis_url) as client:
        await RedisLimiter(client, api_key=KEY, span=60.5).learned(2, 60.0)
    server = Server()
    scheduler = build(server, rpm=5)
    submit(scheduler, 4, 100)
    await until(lambda: len(server.calls) >= 2)
    await quiet()
    assert len(server.calls) == 2
    assert scheduler.effective_rpm == 2


async def test_a_cancelled_ticket_gives_its_slot_back(build: Build) -> None:
    server = Server()
    scheduler = build(server, rpm=1)
    submit(scheduler, 1, 100)
    await until(lambda: len(server.calls) == 1)
    server.release.set()
    await until(lambda: scheduler.stats.served == 1)
    # The window is full: a new ticket waits for a slot, then is withdrawn.
    [waiting] = submit(scheduler, 1, 200)
    await quiet()
    assert waiting.cancel()
    assert server.calls == ["clip 100"]


async def test_without_redis_a_process_paces_itself_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A Redis that is not there: a real client on a port nothing listens on.
    client: Redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}")
    server = Server()
    config = SchedulerConfig(rpm=2, window=60.0, user_cooldown=0, initial_latency=1.0)
    gate = RedisLimiter(client, api_key=KEY, span=config.span)
    scheduler = Scheduler(server.synthesize, config, gate=gate)
    scheduler.start()
    try:
        with caplog.at_level(logging.WARNING, logger="bot.synthesis.scheduler"):
            submit(scheduler, 3, 0)
            await until(lambda: len(server.calls) == 2)
            await quiet()
        # Speech goes on at the process's own SEGMIND_RPM: two starts, the third held back.
        assert len(server.calls) == 2
        warnings = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
        assert len(warnings) == 1
        assert scheduler.stats.running == 2
    finally:
        server.release.set()
        await scheduler.close(grace=0)
        await client.aclose()
