"""Through the whole bot (real interactions, real SQLite): the voice message default, spoken
names, the "X said" wording and the server's dictionary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import discord
import pytest

from bot.config import Settings
from tests import discord_fakes as df
from tests.wiring.harness import Wired, wire
from tests.wiring.test_settings import content

ALICE = 910000000000000001


@pytest.fixture
async def wired(make_settings: Callable[..., Settings]) -> AsyncIterator[Wired]:
    async with wire(make_settings) as wired:
        yield wired


async def member(wired: Wired) -> Any:
    return await wired.bot.services.storage.get_member(ALICE)


async def test_voice_set_chooses_voice_messages_by_default(wired: Wired) -> None:
    (reply,) = await wired.invoke(
        df.slash_command("voice", subcommand="set", user_id=ALICE, voice_message=True)
    )
    assert "Voice messages: yes" in content(reply)
    assert (await member(wired)).voice_message is True
    await wired.invoke(
        df.slash_command("voice", subcommand="set", user_id=ALICE, voice_message=False)
    )
    assert (await member(wired)).voice_message is False


async def test_voice_name_sets_and_clears_how_narration_says_a_member(wired: Wired) -> None:
    (reply,) = await wired.invoke(
        df.slash_command("voice", subcommand="name", user_id=ALICE, said_as="Nwin")
    )
    assert "“Nwin”" in content(reply)
    assert (await member(wired)).spoken_name == "Nwin"
    await wired.invoke(df.slash_command("voice", subcommand="name", user_id=ALICE, said_as="clear"))
    assert (await member(wired)).spoken_name is None


async def test_the_server_words_x_said_and_goes_back_to_the_default(wired: Wired) -> None:
    (saved,) = await wired.invoke(
        df.slash_command("settings", subcommand="narration", user_id=ALICE, said="{name} says")
    )
    assert "“{name} says”" in content(saved)
    (refused,) = await wired.invoke(
        df.slash_command("settings", subcommand="narration", user_id=ALICE, said="says")
    )
    assert "{name}" in content(refused)
    await wired.invoke(
        df.slash_command("settings", subcommand="narration", user_id=ALICE, said="default")
    )
    guild = await wired.bot.services.storage.get_guild(df.GUILD_ID)
    assert guild.narration_said is None


async def test_the_server_turns_two_speaker_merging_on_and_off(wired: Wired) -> None:
    (saved,) = await wired.invoke(
        df.slash_command("settings", subcommand="narration", user_id=ALICE, merge_speakers=True)
    )
    assert "Two members in one call when behind: yes" in content(saved)
    guild = await wired.bot.services.storage.get_guild(df.GUILD_ID)
    assert guild.narration_merge_speakers is True
    await wired.invoke(
        df.slash_command("settings", subcommand="narration", user_id=ALICE, merge_speakers=False)
    )
    guild = await wired.bot.services.storage.get_guild(df.GUILD_ID)
    assert guild.narration_merge_speakers is False


async def test_dictionary_add_list_remove_and_reset_with_the_servers_settings(
    wired: Wired,
) -> None:
    (added,) = await wired.invoke(
        df.slash_command(
            "dictionary", subcommand="add", user_id=ALICE, word="Nguyen", say_as="Nwin"
        )
    )
    assert "Nguyen" in content(added)
    assert "Nwin" in content(added)
    await wired.invoke(
        df.slash_command("dictionary", subcommand="add", user_id=ALICE, word="k8s", say_as="kates")
    )
    (listed,) = await wired.invoke(df.slash_command("dictionary", subcommand="list", user_id=ALICE))
    assert "Nguyen → Nwin" in content(listed)
    assert "k8s → kates" in content(listed)
    await wired.invoke(df.slash_command("speak", user_id=ALICE, text="Hi nguyen"))
    assert wired.segmind.requests[-1].json_body["text"] == "Hi Nwin"
    (removed,) = await wired.invoke(
        df.slash_command("dictionary", subcommand="remove", user_id=ALICE, word="NGUYEN")
    )
    assert "Removed" in content(removed)
    (missing,) = await wired.invoke(
        df.slash_command("dictionary", subcommand="remove", user_id=ALICE, word="nguyen")
    )
    assert "not in" in content(missing)
    await wired.invoke(
        df.slash_command("settings", subcommand="reset", user_id=ALICE, setting="everything")
    )
    guild = await wired.bot.services.storage.get_guild(df.GUILD_ID)
    assert guild.pronunciations == ()


async def test_dictionary_is_for_managers(wired: Wired) -> None:
    (refused,) = await wired.invoke(
        df.slash_command(
            "dictionary",
            subcommand="add",
            user_id=ALICE,
            permissions=df.MEMBER_PERMISSIONS,
            word="a",
            say_as="b",
        )
    )
    assert "Manage Guild permission" in content(refused)
    assert (await wired.bot.services.storage.get_guild(df.GUILD_ID)).pronunciations == ()
    command = next(c for c in wired.bot.tree.get_commands() if c.name == "dictionary")
    assert command.default_permissions == discord.Permissions(manage_guild=True)


async def test_setup_channel_remembers_the_channel_for_managers_only(wired: Wired) -> None:
    (refused,) = await wired.invoke(
        df.slash_command(
            "setup", subcommand="channel", user_id=ALICE, permissions=df.MEMBER_PERMISSIONS
        )
    )
    assert "Manage Guild permission" in content(refused)
    assert (await wired.bot.services.storage.get_guild(df.GUILD_ID)).narration_channel_id is None
    (saved,) = await wired.invoke(df.slash_command("setup", subcommand="channel", user_id=ALICE))
    assert "read aloud from now on" in content(saved)
    guild = await wired.bot.services.storage.get_guild(df.GUILD_ID)
    assert guild.narration_channel_id == df.CHANNEL_ID
