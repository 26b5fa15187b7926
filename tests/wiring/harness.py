"""The whole bot, wired: real interactions through the real command tree and real cogs.

discord.com is answered by aioresponses (tests.discord_fakes.FakeDiscord); Segmind is the fake
server on 127.0.0.1, reached over real HTTP. Shared by every wiring test module.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aioresponses import aioresponses

from bot.app import TTSBot, create_bot
from bot.config import Settings
from tests import discord_fakes as df
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY

DISCORD_TOKEN = "discord-SECRET-token.abc"
ALICE = 900000000000000001
BOB = 900000000000000002


@dataclass
class Wired:
    bot: TTSBot
    discord: df.FakeDiscord
    segmind: fs.FakeSegmind

    async def invoke(self, payload: dict[str, Any]) -> list[df.RestCall]:
        """Deliver an interaction as the gateway would and wait for the tree to finish it."""
        before = {id(t) for t in asyncio.all_tasks()}
        self.bot._connection.parse_interaction_create(payload)  # type: ignore[arg-type]
        started = [
            t
            for t in asyncio.all_tasks()
            if id(t) not in before and t.get_name() == "CommandTree-invoker"
        ]
        assert started, "the command tree did not pick the interaction up"
        await asyncio.wait_for(asyncio.gather(*started), timeout=20)
        return self.discord.for_interaction(payload)

    async def press(self, payload: dict[str, Any]) -> list[df.RestCall]:
        """Deliver a component interaction (a button, a select menu) and wait for its
        dynamic item's callback to finish."""
        before = {id(t) for t in asyncio.all_tasks()}
        self.bot._connection.parse_interaction_create(payload)  # type: ignore[arg-type]
        started = [
            t
            for t in asyncio.all_tasks()
            if id(t) not in before and t.get_name().startswith("discord-ui-dynamic-item")
        ]
        assert started, "no dynamic item picked the interaction up"
        await asyncio.wait_for(asyncio.gather(*started), timeout=20)
        return self.discord.for_interaction(payload)


@contextlib.asynccontextmanager
async def wire(
    make_settings: Callable[..., Settings], shape: fs.Shape = fs.Shape.WAV, **overrides: Any
) -> AsyncIterator[Wired]:
    """The real bot, logged in to the fake Discord, on a fake Segmind; `overrides` are
    settings."""
    async with fs.FakeSegmind(api_key=TEST_API_KEY, shape=shape) as segmind:
        settings = make_settings(
            **(
                dict(
                    discord_token=DISCORD_TOKEN,
                    segmind_base_url=segmind.base_url,
                    user_cooldown=0,
                    backoff_base=0.01,
                )
                | overrides
            )
        )
        with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
            discord = df.FakeDiscord(mocked)
            bot = create_bot(settings)
            await bot.login(DISCORD_TOKEN)
            try:
                yield Wired(bot, discord, segmind)
            finally:
                await bot.close()


@pytest.fixture
async def wired(make_settings: Callable[..., Settings]) -> AsyncIterator[Wired]:
    async with wire(make_settings) as wired:
        yield wired
