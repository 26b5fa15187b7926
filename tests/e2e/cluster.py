"""The bot as a cluster for end-to-end tests: one `python -m bot run` per shard, all on one
Segmind key, sharing a real PostgreSQL (settings, usage) and a real Redis (the key's window,
the clip cache, calls in flight), against one emulated Discord that shards as Discord does."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from tests.e2e.discord_emulator import Emulator, Interaction, ReceivedAudio
from tests.e2e.discord_emulator.state import ALICE
from tests.e2e.harness import BotProcess, start_bot
from tests.fake_segmind import FakeSegmind
from tests.pg_server import PostgresServer
from tests.redis_server import RedisServer

FRAME = 0.020


def answer(interaction: Interaction) -> str:
    return str((interaction.original or {}).get("content") or "")


def attachments(interaction: Interaction) -> list[dict[str, Any]]:
    return list((interaction.original or {}).get("attachments") or [])


@dataclass
class Heard:
    """A mark in a guild's audio, so a test measures what was heard after it."""

    audio: ReceivedAudio
    seconds: float
    silence: int

    @classmethod
    def now(cls, audio: ReceivedAudio) -> Heard:
        return cls(audio, audio.duration, audio.silence_packets)

    @property
    def since(self) -> float:
        return self.audio.duration - self.seconds

    def clip_done(self, seconds: float) -> bool:
        """At least `seconds` of speech since the mark, then end-of-speech silence."""
        return self.since >= seconds * 0.9 and self.audio.silence_packets >= self.silence + 5


@dataclass
class Cluster:
    emulator: Emulator
    segmind: FakeSegmind
    postgres: PostgresServer
    database_url: str
    redis: RedisServer
    workdir: Path
    env: dict[str, str]
    shard_count: int
    bots: dict[int, BotProcess] = field(default_factory=dict)
    _starts: itertools.count[int] = field(default_factory=itertools.count)

    async def start_shard(self, shard_id: int) -> BotProcess:
        """A process for one shard, in a directory of its own (a restart gets a new one, so
        the killed process's log stays for reading)."""
        workdir = self.workdir / f"shard{shard_id}-{next(self._starts)}"
        bot = await start_bot(
            self.emulator,
            self.segmind,
            workdir,
            SHARD_COUNT=str(self.shard_count),
            SHARD_IDS=str(shard_id),
            # A shard killed and restarted waits out its old lease: 3 s, not 30.
            SHARD_LEASE_TTL="3",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis.url(),
            **self.env,
        )
        self.bots[shard_id] = bot
        return bot

    async def wait(self, predicate: Callable[[], Any], within: float = 15) -> Any:
        try:
            return await self.emulator.wait_for(predicate, within)
        except TimeoutError:
            raise AssertionError(f"timed out; the bots' output:\n{self.logs()}") from None

    async def wait_until(
        self, measure: Callable[[], Awaitable[Any]], expected: Any, within: float = 20
    ) -> None:
        """Poll `measure()` (something outside the emulator, such as the database) until it
        gives `expected`."""
        last: Any = None
        for _ in range(round(within / 0.1)):
            if (last := await measure()) == expected:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"still {last!r}, not {expected!r}; the bots' output:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- shard {n} ---\n{bot.log()}" for n, bot in self.bots.items())

    async def join(self, guild_id: int) -> None:
        """Alice enters the guild's voice channel and runs /join (if the bot is not there)."""
        world = self.emulator.guild(guild_id)
        await self.emulator.member_voice(ALICE, world.voice_channel_id, guild_id=guild_id)
        joined = await self.emulator.interact("join", user_id=ALICE, guild_id=guild_id)
        await self.wait(lambda: "Joined" in answer(joined) or "already" in answer(joined))
        await self.wait(lambda: self.emulator.bot_voice_channel(guild_id) is not None)

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def stop(self) -> None:
        await asyncio.gather(*(self._stop(bot) for bot in self.bots.values()))

    @staticmethod
    async def _stop(bot: BotProcess) -> None:
        if bot.process.returncode is None:
            try:
                await bot.terminate(within=15)
            except AssertionError:
                await bot.kill()
