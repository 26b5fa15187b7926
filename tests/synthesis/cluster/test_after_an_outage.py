"""Two processes on one key, through a Redis outage and back, with a real Redis (hung with
SIGSTOP, then resumed) and a key that really refuses calls past its limit.

Alone, each process paces at its share of the key (how many processes it last saw sharing
the window), and takes the other's calls for a lower limit of the key if it knew of none;
those limits are its own, provisional: when the shared window answers again they are
dropped, both processes are admitted against the one rate Redis holds, and the operator hears
of no limit.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from bot.audio import Audio
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.cluster import RedisLimiter, RedisLink
from bot.synthesis.scheduler import Scheduler, SchedulerConfig, Synthesize
from tests.redis_server import RedisServer
from tests.synthesis.scheduler.fakes import AUDIO, limited

KEY = "sk-cluster-key"
#: The key's real limit, and SEGMIND_RPM in both processes: they set it right.
LIMIT = 20
#: A scaled window, so a test of ten windows takes seconds.
WINDOW = 0.5
LATENCY = 0.02


class Key:
    """The API key both processes call: `LIMIT` calls per `WINDOW`, sliding and counted on
    arrival like the server does; past it a 429 saying when the oldest call ages out."""

    def __init__(self) -> None:
        self.accepted: deque[float] = deque()
        self.log: list[tuple[float, str, int]] = []  # (loop time, process, status)

    def client(self, process: str) -> Synthesize:
        async def synthesize(request: SpeechRequest) -> Audio:
            now = asyncio.get_running_loop().time()
            while self.accepted and self.accepted[0] <= now - WINDOW:
                self.accepted.popleft()
            if len(self.accepted) >= LIMIT:
                self.log.append((now, process, 429))
                raise limited(self.accepted[0] + WINDOW - now)
            self.accepted.append(now)
            self.log.append((now, process, 200))
            await asyncio.sleep(LATENCY)
            return AUDIO

        return synthesize

    def served(self, process: str, since: float, until: float) -> int:
        return sum(
            1
            for at, who, status in self.log
            if who == process and status == 200 and since <= at < until
        )


class Process:
    """One bot process: its own connection to Redis, its scheduler, the limits it reported."""

    def __init__(self, name: str, key: Key, url: str) -> None:
        self.name = name
        self.link = RedisLink(Redis.from_url(url), budget=0.2, probe_every=0.05)
        config = SchedulerConfig(
            rpm=LIMIT,
            window=WINDOW,
            user_cooldown=0,
            initial_latency=LATENCY,
            max_queue=100_000,
            max_waiting_per_user=100_000,
            job_timeout=600.0,
        )
        self.alerts: list[int] = []
        self.scheduler = Scheduler(
            key.client(name),
            config,
            gate=RedisLimiter(self.link, api_key=KEY, span=config.span),
            on_limit_learned=self.alerts.append,
        )
        self.scheduler.start()
        self._users = itertools.count(1)

    def keep_busy(self, count: int) -> None:
        """More demand than the key allows, for as long as the test runs."""
        for _ in range(count):
            user = next(self._users)
            self.scheduler.submit(SpeechRequest(text=f"{self.name} {user}"), Requester(user))

    async def close(self) -> None:
        await self.scheduler.close(grace=0)
        await self.link.close()


Make = Callable[[str, Key], Process]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[RedisServer]:
    """A Redis of this test's own, to hang or stop."""
    server = RedisServer(redis_server.binary)
    server.start()
    yield server
    server.stop()


class Outage:
    """Redis hung (SIGSTOP: it keeps its data) or stopped and started again, empty, on the
    same port (a restarted container)."""

    def __init__(self, redis: RedisServer, kind: str) -> None:
        self.redis = redis
        self.kind = kind
        self.port = redis.port

    def begin(self) -> None:
        if self.kind == "hung":
            self.redis.hang()
        else:
            self.redis.stop()

    def end(self) -> None:
        if self.kind == "hung":
            self.redis.resume()
        else:
            self.redis.start(self.port)


@pytest.fixture
async def make(redis: RedisServer) -> AsyncIterator[Make]:
    made: list[Process] = []

    def build(name: str, key: Key) -> Process:
        made.append(Process(name, key, redis.url()))
        return made[-1]

    yield build
    for process in made:
        await process.close()


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def assert_shared_fairly_and_fully(key: Key, back: float) -> None:
    """From the third window after `back` on, the key is used to its limit, half by each."""
    since, end = back + 2 * WINDOW, back + 10 * WINDOW
    mine, theirs = key.served("first", since, end), key.served("second", since, end)
    assert mine + theirs >= 0.95 * LIMIT * 8
    assert min(mine, theirs) >= 0.8 * max(mine, theirs), (mine, theirs)


@pytest.mark.parametrize("kind", ["hung", "restarted"])
async def test_after_an_outage_both_processes_share_the_key_fairly_and_fully_with_no_alert(
    redis: RedisServer, make: Make, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.synthesis.scheduler")
    loop = asyncio.get_running_loop()
    key = Key()
    first, second = make("first", key), make("second", key)
    outage = Outage(redis, kind)
    outage.begin()
    first.keep_busy(2000)
    second.keep_busy(2000)
    # Alone, each paces at the whole key's rate: the other's calls come back as 429s.
    await asyncio.sleep(4 * WINDOW)
    assert first.link.down
    assert second.link.down
    assert min(first.scheduler.effective_rpm, second.scheduler.effective_rpm) < LIMIT
    outage.end()
    await until(lambda: not first.link.down and not second.link.down)
    back = loop.time()
    await asyncio.sleep(10 * WINDOW)
    assert_shared_fairly_and_fully(key, back)
    assert first.scheduler.effective_rpm == second.scheduler.effective_rpm == LIMIT
    # Nobody learned a lower limit: the operator is told nothing.
    assert first.alerts == second.alerts == []
    assert not [r for r in caplog.records if "SEGMIND_RPM is" in r.getMessage()]


@pytest.mark.parametrize("kind", ["hung", "restarted"])
async def test_when_redis_goes_away_mid_run_each_process_paces_alone_at_its_share(
    redis: RedisServer, make: Make, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """Both busy through Redis, then Redis hangs (or dies, and comes back empty): each knows
    it shared the key with one other, so alone it paces at half the rate, and the key is
    hardly ever refused; back, the shared window splits the key evenly and fully again."""
    caplog.set_level(logging.WARNING, logger="bot.synthesis.scheduler")
    loop = asyncio.get_running_loop()
    key = Key()
    first, second = make("first", key), make("second", key)
    first.keep_busy(2000)
    second.keep_busy(2000)
    await asyncio.sleep(3 * WINDOW)
    assert not first.link.down
    assert not second.link.down
    outage = Outage(redis, kind)
    away = loop.time()
    outage.begin()
    await until(lambda: first.link.down and second.link.down)
    await asyncio.sleep(6 * WINDOW)
    returning = loop.time()
    outage.end()
    while_alone = [status for at, _, status in key.log if away <= at < returning]
    assert while_alone.count(429) < 0.10 * len(while_alone), (
        while_alone.count(429),
        len(while_alone),
    )
    # Still used: each at its share, then probing upward as no 429 says otherwise.
    assert while_alone.count(200) >= 0.8 * LIMIT * 6
    told = [r.getMessage() for r in caplog.records if "pacing this process alone" in r.getMessage()]
    assert len(told) == 2, told  # once each
    for line in told:
        assert f"at {LIMIT // 2} of {LIMIT} calls per {WINDOW:g} s, its share of 2" in line
    # A 429 while alone cannot be shared either: told at most once each, not once a 429.
    unshared = [r for r in caplog.records if "Could not share" in r.getMessage()]
    assert len(unshared) <= 2, [r.getMessage() for r in unshared]
    await until(lambda: not first.link.down and not second.link.down)
    back = loop.time()
    await asyncio.sleep(10 * WINDOW)
    assert_shared_fairly_and_fully(key, back)
    assert first.scheduler.effective_rpm == second.scheduler.effective_rpm == LIMIT
    assert first.alerts == second.alerts == []
