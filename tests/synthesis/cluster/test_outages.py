"""Redis misbehaving, with a real server: hung, down at start, refusing the bot. A member never
waits on it past one budget, the bot starts without it and joins it when it answers, and a
Redis that refuses the bot is a configuration error naming REDIS_URL."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import pytest
from redis.asyncio import Redis

from bot.config import Settings
from bot.errors import SettingsError
from bot.services import open_services
from bot.speech.access import Caller
from bot.synthesis.cluster import REDIS_BUDGET, key_prefix
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY
from tests.redis_server import RedisServer
from tests.servers import free_port

#: What a begin may take beyond the budget (the fake API, a loaded machine), still well
#: inside the 3 s Discord gives an interaction before the budget's own 2 s.
MARGIN = 1.0

Servers = Callable[..., RedisServer]


@pytest.fixture
def servers(redis_server: RedisServer) -> Iterator[Servers]:
    """Redis servers of this test's own, to hang, start late or give a password."""
    made: list[RedisServer] = []

    def make(*args: str) -> RedisServer:
        made.append(RedisServer(redis_server.binary, args=args))
        return made[-1]

    yield make
    for server in made:
        server.stop()


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.02)


async def test_a_hung_redis_costs_a_request_one_budget_at_most_and_is_logged_once(
    make_settings: Callable[..., Settings], servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    server = servers()
    server.start()
    caplog.set_level(logging.INFO)
    async with fs.FakeSegmind(api_key=TEST_API_KEY) as fake:
        settings = make_settings(
            segmind_base_url=fake.base_url, user_cooldown=0, redis_url=server.url()
        )
        services = await open_services(settings)
        try:
            server.hang()
            # A miss: the shared tier is given one budget, then the call is made alone.
            async with asyncio.timeout(REDIS_BUDGET + MARGIN):
                stream = await services.speech.begin(Caller(1, guild_id=9), "Hello there")
            await asyncio.wait_for(stream.collect(), 30)
            # A hit from this process's memory never asks Redis.
            hits = services.speech.source.cache_hits
            async with asyncio.timeout(MARGIN):
                await services.speech.begin(Caller(2, guild_id=9), "Hello there")
            assert services.speech.source.cache_hits == hits + 1
            # Another miss in the same outage: Redis is skipped at once, not asked again.
            async with asyncio.timeout(MARGIN):
                other = await services.speech.begin(Caller(3, guild_id=9), "Something else")
            await asyncio.wait_for(other.collect(), 30)
            server.resume()
            assert services.cluster is not None
            await eventually(lambda: services.cluster is not None and not services.cluster.down)
            again = await services.speech.begin(Caller(4, guild_id=9), "A third thing")
            await asyncio.wait_for(again.collect(), 30)
        finally:
            server.resume()
            await services.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("shared audio cache in Redis cannot be reached" in m for m in messages) == 1
    assert sum("shared audio cache in Redis answers again" in m for m in messages) == 1


async def test_calls_in_flight_when_redis_hangs_are_served_and_the_outage_told_once(
    make_settings: Callable[..., Settings], servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    server = servers()
    server.start()
    caplog.set_level(logging.INFO)
    async with fs.FakeSegmind(api_key=TEST_API_KEY, latency=0.5) as fake:
        settings = make_settings(
            segmind_base_url=fake.base_url, user_cooldown=0, redis_url=server.url()
        )
        services = await open_services(settings)
        try:
            streams = [
                await services.speech.begin(Caller(n, guild_id=9), f"Text number {n}")
                for n in range(4)
            ]
            await eventually(lambda: len(fake.requests) == 4)
            server.hang()  # while each call is made: its answer cannot be shared
            for stream in streams:
                await asyncio.wait_for(stream.collect(), 30)
            await asyncio.sleep(REDIS_BUDGET + MARGIN)  # each answer's sharing gives up
        finally:
            server.resume()
            await services.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # Four answers stranded by one outage: told once.
    assert sum("Could not share" in m for m in warnings) == 1, warnings


async def test_without_redis_at_start_speech_paces_alone_then_joins_the_shared_window(
    make_settings: Callable[..., Settings], servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    server = servers()
    caplog.set_level(logging.INFO)
    async with fs.FakeSegmind(api_key=TEST_API_KEY) as fake:
        settings = make_settings(
            segmind_base_url=fake.base_url,
            user_cooldown=0,
            redis_url=f"redis://127.0.0.1:{port}/0",
        )
        services = await open_services(settings)
        try:
            stream = await services.speech.begin(Caller(1, guild_id=9), "Nobody shares this")
            await asyncio.wait_for(stream.collect(), 30)
            server.start(port)
            await eventually(lambda: services.cluster is not None and not services.cluster.down)
            stream = await services.speech.begin(Caller(2, guild_id=9), "Now it is shared")
            await asyncio.wait_for(stream.collect(), 30)
        finally:
            await services.close()
    async with Redis.from_url(server.url()) as client:
        assert await client.zcard(key_prefix(TEST_API_KEY) + "starts") == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis at" in m and "cannot be reached" in m for m in messages) == 1
    assert sum("rate window shared" in m and "cannot be reached" in m for m in messages) == 1
    assert sum("rate window shared" in m and "answers again" in m for m in messages) == 1


async def test_a_redis_user_without_the_commands_the_bot_needs_is_a_settings_error(
    make_settings: Callable[..., Settings], servers: Servers
) -> None:
    server = servers("--user", "bot", "on", ">only-PING-pass", "~*", "+ping")
    server.start()
    url = f"redis://bot:only-PING-pass@127.0.0.1:{server.port}/0"
    with pytest.raises(SettingsError) as refused:
        await open_services(make_settings(redis_url=url))
    assert "REDIS_URL" in str(refused.value)
    assert "no permissions" in str(refused.value)
    assert "only-PING-pass" not in str(refused.value)
