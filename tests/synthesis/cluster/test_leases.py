"""One process per shard, with a real Redis: a second process given a shard another one runs
refuses to start, naming it; a killed process's shards are free again within the lease's
lifetime, a cleanly stopped one's at once; without Redis the bot starts anyway."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.config import Settings
from bot.errors import SettingsError
from bot.synthesis.cluster import ShardLeases, hold_shards, key_prefix
from tests.conftest import TEST_API_KEY
from tests.redis_server import RedisServer
from tests.servers import free_port

TOKEN = "discord.SECRET.token"
ROOT = Path(__file__).resolve().parents[3]
#: A short lifetime, so a stale lease expires within the test (the bot's is 30 s).
TTL = 1.0


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def process(redis: Redis, *shards: int, ttl: float = TTL) -> ShardLeases:
    """What one bot process holds (each its own owner, as two processes would be)."""
    return ShardLeases(redis, shards, secret=TOKEN, ttl=ttl)


async def test_a_second_process_on_a_running_shard_refuses_naming_it(redis: Redis) -> None:
    first = process(redis, 0, 1)
    await first.take()
    try:
        second = process(redis, 1, 2)
        began = time.monotonic()
        with pytest.raises(SettingsError) as refused:
            await second.take(poll=0.05)
        # Told apart from a stale lease by the first renewal, not by waiting the whole TTL.
        assert time.monotonic() - began < TTL
        message = str(refused.value)
        assert message.startswith("shard 1 of SHARD_IDS is already run by another process")
        assert f"pid {os.getpid()}" in message
        assert "\n" not in message
        # Refused all or nothing: shard 2 was not taken on the way.
        assert await redis.get(key_prefix(TOKEN, "tts:shards") + "2") is None
    finally:
        await first.release()


async def test_processes_on_different_shards_both_start(redis: Redis) -> None:
    first, second = process(redis, 0), process(redis, 1)
    await first.take()
    await second.take()
    await first.release()
    await second.release()


async def test_a_killed_process_s_shards_are_taken_by_its_restart_within_the_lease(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    killed = process(redis, 0, 1)
    await killed.take()
    assert killed._renewer is not None
    killed._renewer.cancel()  # SIGKILL: no renewal, no release
    restarted = process(redis, 0, 1)
    began = time.monotonic()
    with caplog.at_level(logging.WARNING):
        await restarted.take(poll=0.05)
    assert time.monotonic() - began < TTL + 0.5
    assert "waiting up to 1 s for the lease to expire" in caplog.text
    lease = await redis.get(key_prefix(TOKEN, "tts:shards") + "0")
    assert lease is not None
    assert (lease.decode() if isinstance(lease, bytes) else lease).startswith(restarted.owner)
    await restarted.release()


async def test_a_clean_shutdown_frees_the_shards_at_once(redis: Redis) -> None:
    first = process(redis, 0, ttl=30.0)
    await first.take()
    await first.release()
    began = time.monotonic()
    await process(redis, 0, ttl=30.0).take()
    assert time.monotonic() - began < 1.0


async def test_the_leases_are_renewed_while_the_process_runs(redis: Redis) -> None:
    holder = process(redis, 3, ttl=0.6)
    await holder.take()
    await asyncio.sleep(1.5)  # over twice the lifetime: alive only by its renewals
    assert await redis.get(key_prefix(TOKEN, "tts:shards") + "3") is not None
    await holder.release()
    assert await redis.get(key_prefix(TOKEN, "tts:shards") + "3") is None


async def test_without_redis_the_bot_starts_and_says_so(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        discord_token=TOKEN,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        shard_count=2,
        shard_ids="0",
    )
    with caplog.at_level(logging.WARNING):
        async with hold_shards(settings):
            pass
    assert "running shard(s) 0 without checking that no other process runs them" in caplog.text


async def test_leases_are_taken_once_a_redis_down_at_start_answers(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    server = RedisServer(redis_server.binary)
    holder = process(redis, 0, ttl=0.6)
    try:
        await holder.take()  # nothing listens yet: started anyway
        server.start(port)
        for _ in range(100):
            if await redis.get(key_prefix(TOKEN, "tts:shards") + "0") is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the lease was never taken")
        with pytest.raises(SettingsError):  # and now it counts
            await process(redis, 0, ttl=0.6).take(poll=0.05)
    finally:
        await holder.release()
        await redis.aclose()
        server.stop()


async def test_python_m_bot_run_refuses_a_running_shard_before_logging_in(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """Through the CLI, as an operator who started a copy of a shard's service would see it."""
    holder = process(redis, 1, ttl=1.5)
    await holder.take()
    env = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "SEGMIND_API_KEY"}}
    env.update(
        DISCORD_TOKEN=TOKEN,
        SEGMIND_API_KEY=TEST_API_KEY,
        # Nothing listens there: a bot that got as far as logging in would retry forever.
        DISCORD_API_BASE_URL=f"http://127.0.0.1:{free_port()}",
        REDIS_URL=redis_url,
        SHARD_COUNT="2",
        SHARD_IDS="0,1",
        DATA_DIR=str(tmp_path / "data"),
        LOG_LEVEL="ERROR",
        PYTHONPATH=str(ROOT),
    )
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await child.communicate()
    finally:
        await holder.release()
    stderr = err.decode()
    assert child.returncode == 2, stderr
    assert stderr.startswith("error: shard 1 of SHARD_IDS is already run by another process")
    assert stderr.count("\n") == 1
    assert TOKEN not in stderr + out.decode()
