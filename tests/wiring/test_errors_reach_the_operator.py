"""An unexpected error in a command, through the real bot: the member gets a reference, the
operator gets the same reference in one alert (DM to the owner when no alert channel is set),
with no piece of a secret, and a repeat within the minute is not sent again."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from bot.storage import GuildSettings
from tests import discord_fakes as df
from tests.conftest import TEST_API_KEY
from tests.wiring.harness import ALICE, BOB, DISCORD_TOKEN, Wired


async def test_an_unexpected_error_reaches_the_operator_once_a_minute(wired: Wired) -> None:
    async def broken(guild_id: int) -> GuildSettings:
        raise RuntimeError(f"storage on fire (dsn key={TEST_API_KEY}, token={DISCORD_TOKEN})")

    wired.bot.services.storage.get_guild = broken  # type: ignore[method-assign]
    refs = []
    for user in (ALICE, BOB):
        calls = await wired.invoke(df.slash_command("speak", user_id=user, text="hello"))
        answer: Any = calls[-1].json
        told = answer["data"]["content"] if "data" in answer else answer["content"]
        found = re.search(r"ref `([0-9a-f]{6})`", told)
        assert found, told
        refs.append(found.group(1))
    await asyncio.gather(*wired.bot._error_alerts._tasks)  # Every alert under way, sent.
    (alert,) = wired.discord.channel_messages()
    assert alert.json is not None
    line = alert.json["content"]
    assert line.startswith(f"🐞 Unexpected error in /speak (ref `{refs[0]}`): RuntimeError:")
    assert "storage on fire" in line
    assert TEST_API_KEY[:8] not in line
    assert DISCORD_TOKEN[:8] not in line
    assert refs[1] not in line  # The second, within the minute, is in the log only.
