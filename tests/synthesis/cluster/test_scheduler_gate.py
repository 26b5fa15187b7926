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
from bot.synthesis.scheduler.deadline import PausedTooLongError
from tests.servers import free_port
from tests.synthesis.scheduler.fakes import AUDIO

KEY = "sk-cluster-key"


class Server:
    """A synthesize that holds every call until released, counting the calls it got."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.times: list[float] = []  # loop time of each call
        self.release = asyncio.Event()
        self.refuse: float | None = None  # answer 429 with this reset, once

    async def synthesize(self, request: SpeechRequest) -> Audio:
        self.calls.append(request.text)
        self.times.append(asyncio.get_running_loop().time())
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

    def make(
        server: Server, *, rpm: int = 3, window: float = 60.0, job_timeout: float = 14 * 60
    ) -> Scheduler:
        client: Redis = Redis.from_url(redis_url)
        config = SchedulerConfig(
            rpm=rpm,
            window=window,
            user_cooldown=0,
            initial_latency=1.0,
            job_timeout=job_timeout,
        )
        gate = RedisLimiter(client, api_key=KEY, span=config.span)
        scheduler = Scheduler(server.synthesize, config, gate=gate, rng=lambda: 0.0)
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


async def test_a_pause_shared_through_redis_ends_only_the_requests_that_cannot_wait_for_it(
    build: Build, redis_url: str
) -> None:
    loop = asyncio.get_running_loop()
    server = Server()
    server.refuse = 3.0
    hit = build(server, rpm=2, window=2.0)
    submit(hit, 1, 100)
    await until(lambda: hit.paused_until is not None)
    resume = loop.time() + 3.0  # about: the 429's reset, shared through Redis
    async with Redis.from_url(redis_url) as client, asyncio.timeout(10):
        while not await client.exists(key_prefix(KEY) + "pause"):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await hit.close(grace=0)  # its own ticket out of the way: the pause stays in Redis
    server.release.set()
    # The other process: 2 calls per 2 s window, so after the pause (3 s) its queue starts at
    # about 3, 4, 5 and 6 s, and a request may wait 4.5 s: the first two make it.
    other = build(server, rpm=2, window=2.0, job_timeout=4.5)
    heard: list[float] = []  # when the first ticket's listener was told it would be ready

    def listen(ticket: Ticket) -> None:
        if ticket.eta is not None:
            heard.append(loop.time() + ticket.eta)

    tickets = submit(other, 4, 200)
    tickets[0].add_listener(listen)
    await until(lambda: other.paused_until is not None)
    await until(lambda: tickets[3].state == "failed")
    for late in tickets[2:]:
        with pytest.raises(PausedTooLongError) as ended:
            await late.result()
        assert 2.0 < ended.value.wait <= 3.0
    assert [t.state for t in tickets[:2]] == ["queued", "queued"]
    # Those who can wait heard when to expect their speech, the pause included.
    assert heard
    assert heard[-1] >= resume - 0.1
    await until(lambda: all(t.state == "done" for t in tickets[:2]))
    assert server.calls[1:] == ["clip 200", "clip 201"]
    assert all(started >= resume - 0.2 for started in server.times[1:])
    assert other.stats.expired == 2


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
