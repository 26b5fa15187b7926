"""Commands that spend money or touch a server work only in a server (issue 10, defect 1).

A DM has no server rules and no server quota, so speech asked for there would be paid for
outside every limit an owner set; the voice commands have no voice channel to act on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import discord
import pytest

from tests import discord_fakes as df
from tests.wiring.harness import ALICE, Wired

#: Personal settings are the only commands that make sense without a server; `/voices` is
#: choosing one's voice, and its previews are the bot's own, at most 30 calls ever.
PERSONAL = {"voice", "voices", "forget-me"}


def test_every_command_but_personal_settings_is_declared_guild_only(wired: Wired) -> None:
    tree = wired.bot.tree
    commands = [*tree.get_commands(), *tree.get_commands(type=discord.AppCommandType.message)]
    assert {c.name for c in commands} >= {"speak", "Speak this message", "join", "queue"}
    for command in commands:
        body = command.to_dict(tree)
        if command.name in PERSONAL:
            continue
        assert body["dm_permission"] is False, command.name
        assert body["contexts"] == [0], command.name


async def test_speak_in_a_dm_is_refused_with_a_clear_line_and_costs_nothing(wired: Wired) -> None:
    calls = await wired.invoke(df.in_dm(df.slash_command("speak", user_id=ALICE, text="Hello")))
    (call,) = calls
    assert call.json is not None
    assert call.json["type"] == 4
    assert call.json["data"]["flags"] == df.EPHEMERAL
    assert "only in a server" in call.json["data"]["content"]
    assert wired.segmind.tts_calls == 0
    since = datetime.now(UTC) - timedelta(days=1)
    usage = await wired.bot.services.storage.usage(since=since, user_id=ALICE)
    assert usage.calls == 0


async def test_speak_this_message_in_a_dm_is_refused(wired: Wired) -> None:
    message = df.message_payload("Read me", author_id=ALICE)
    message.pop("guild_id")
    calls = await wired.invoke(
        df.in_dm(df.message_command("Speak this message", message, user_id=ALICE))
    )
    (call,) = calls
    assert call.json is not None
    assert "only in a server" in call.json["data"]["content"]
    assert wired.segmind.tts_calls == 0


@pytest.mark.parametrize("name", ["join", "leave", "skip", "stop", "queue"])
async def test_voice_commands_in_a_dm_say_so_instead_of_failing(wired: Wired, name: str) -> None:
    calls = await wired.invoke(df.in_dm(df.slash_command(name, user_id=ALICE)))
    (call,) = calls
    assert call.json is not None
    content = call.json["data"]["content"]
    assert "only in a server" in content
    assert "Something went wrong" not in content
