"""A member's cooldown and waiting cap hold across every process sharing Redis, with a real
Redis and the fake Segmind: two `open_services` are two processes. Without Redis (or with it
down) each process keeps its own, as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.config import Settings
from bot.errors import CooldownError, QueueFullError, SchedulerClosedError
from bot.services import Services, open_services
from bot.speech.access import Caller, Requester
from bot.synthesis.cluster import RedisTurns, key_prefix
from bot.synthesis.service import Destination
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY
from tests.redis_server import RedisServer
from tests.servers import free_port

TOKEN = "discord.SECRET.token"
MEMBER = Caller(7, guild_id=1)


@asynccontextmanager
async def processes(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    redis_url: str,
    fake: fs.FakeSegmind,
    **settings: object,
) -> AsyncIterator[tuple[Services, Services]]:
    """Two processes of one bot on one Redis, each with a data directory of its own."""
    opened = [
        await open_services(
            make_settings(
                discord_token=TOKEN,
                segmind_base_url=fake.base_url,
                segmind_rpm=600,
                redis_url=redis_url,
                data_dir=tmp_path / f"process{n}",
                **settings,
            )
        )
        for n in range(2)
    ]
    try:
        yield opened[0], opened[1]
    finally:
        for services in opened:
            await services.close()


async def test_a_cooldown_started_on_one_process_refuses_the_member_on_another(
    make_settings: Callable[..., Settings], tmp_path: Path, redis_url: str
) -> None:
    async with (
        fs.FakeSegmind(api_key=TEST_API_KEY) as fake,
        processes(make_settings, tmp_path, redis_url, fake, user_cooldown=30) as (one, two),
    ):
        await (await one.speech.begin(MEMBER, "Hello from the first server")).collect()
        with pytest.raises(CooldownError) as refused:
            await two.speech.begin(MEMBER, "And hello from the second")
        assert 25 < refused.value.retry_after <= 30
        # /speak finds it out before deferring, so the refusal stays private.
        requester = Requester(MEMBER.user_id, MEMBER.guild_id)
        assert isinstance(await two.speech.source.refusal(requester), CooldownError)
        # Another member is not held up, and narration (no cooldown) is read as always.
        await (await two.speech.begin(Caller(8, guild_id=1), "Someone else")).collect()
        narration = await two.speech.begin(
            MEMBER, "A message narrated", destination=Destination.NARRATION
        )
        await narration.collect()
        assert fake.tts_calls == 3
    async with Redis.from_url(redis_url) as client:
        assert await client.exists(key_prefix(TOKEN, "tts:members") + "cooldown:7")


async def test_the_waiting_cap_counts_the_member_s_calls_on_every_process(
    make_settings: Callable[..., Settings], tmp_path: Path, redis_url: str
) -> None:
    async with (
        fs.FakeSegmind(api_key=TEST_API_KEY, latency=1.0) as fake,
        processes(
            make_settings,
            tmp_path,
            redis_url,
            fake,
            user_cooldown=0,
            max_waiting_per_user=2,
        ) as (one, two),
    ):
        waiting = [await one.speech.begin(MEMBER, f"Message number {n}") for n in range(2)]
        with pytest.raises(QueueFullError) as refused:
            await two.speech.begin(MEMBER, "A third message, elsewhere")
        assert refused.value.per_user
        requester = Requester(MEMBER.user_id, MEMBER.guild_id, 0.0)
        assert isinstance(await two.speech.source.refusal(requester), QueueFullError)
        for stream in waiting:
            await stream.collect()
        turns = one.speech.source.turns
        assert isinstance(turns, RedisTurns)
        await turns.settle()
        # Their calls are done: they count no more, on any process.
        await (await two.speech.begin(MEMBER, "A third message, elsewhere")).collect()
        assert fake.tts_calls == 3


async def test_a_message_held_for_a_stage_starts_the_cooldown_everywhere_counting_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path, redis_url: str
) -> None:
    async with (
        fs.FakeSegmind(api_key=TEST_API_KEY) as fake,
        processes(make_settings, tmp_path, redis_url, fake, user_cooldown=30) as (one, two),
    ):
        turns = one.speech.source.turns
        assert turns is not None
        await turns.take(Requester(MEMBER.user_id, MEMBER.guild_id), cooldown_only=True)
        with pytest.raises(CooldownError):
            await two.speech.begin(MEMBER, "Too soon, elsewhere")
        async with Redis.from_url(redis_url) as client:
            assert await client.zcard(key_prefix(TOKEN, "tts:members") + "waiting:7") == 0
        assert fake.tts_calls == 0


async def test_a_turn_refused_by_the_process_itself_is_given_back_to_the_cluster(
    make_settings: Callable[..., Settings], tmp_path: Path, redis_url: str
) -> None:
    """The scheduler refuses after Redis said yes (it is closing): the cooldown started in
    Redis for that message is taken back, or the member would wait for nothing."""
    async with (
        fs.FakeSegmind(api_key=TEST_API_KEY) as fake,
        processes(make_settings, tmp_path, redis_url, fake, user_cooldown=30) as (one, two),
    ):
        await one.stop_intake(grace=0)
        with pytest.raises(SchedulerClosedError):
            await one.speech.begin(MEMBER, "Refused by this process")
        await (await two.speech.begin(MEMBER, "Accepted on the other")).collect()
        assert fake.tts_calls == 1


async def test_without_redis_each_process_keeps_its_own_cooldowns(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Redis not answering (nothing listens): the member is never refused for it."""
    async with (
        fs.FakeSegmind(api_key=TEST_API_KEY) as fake,
        processes(
            make_settings,
            tmp_path,
            f"redis://127.0.0.1:{free_port()}/0",
            fake,
            user_cooldown=30,
        ) as (one, two),
    ):
        await (await one.speech.begin(MEMBER, "Hello from the first server")).collect()
        await (await two.speech.begin(MEMBER, "And hello from the second")).collect()
        with pytest.raises(CooldownError):  # each process's own cooldown still holds
            await one.speech.begin(MEMBER, "Too soon on the first")
        assert fake.tts_calls == 2


async def test_a_hung_redis_never_holds_speak_s_check_before_deferring(
    redis_server: RedisServer,
) -> None:
    """The cluster's check before /speak defers gives up in a fraction of Discord's 3 s."""
    from bot.synthesis.cluster import open_link
    from bot.synthesis.cluster.members import PEEK_BUDGET

    server = RedisServer(redis_server.binary)
    server.start()
    link = await open_link(server.url())
    turns = RedisTurns(link, prefix="test:", cooldown=5, cap=3, life=60)
    try:
        server.hang()
        began = asyncio.get_running_loop().time()
        assert await turns.refusal(Requester(1)) is None
        assert asyncio.get_running_loop().time() - began < PEEK_BUDGET + 0.3
        server.resume()
    finally:
        await link.close()
        server.stop()
