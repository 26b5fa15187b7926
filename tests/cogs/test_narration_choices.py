"""Who narration leaves unread by choice: a member who opted out (in every server), a Stage's
audience where the server asks, messages without the server's required prefix; and repeated
characters read at the server's count. None of them moves an idle bot or makes a call."""

from __future__ import annotations

from typing import Any
from unittest.mock import create_autospec

import discord

from bot.storage import SQLiteStorage
from cogs.narration import Narration
from tests.cogs.test_narration import ALICE, GUILD, Scene, idle
from tests.cogs.test_narration import scene as scene
from tests.cogs.test_narration import storage as storage

BOB = 1002


async def test_a_member_who_opted_out_is_never_read_and_costs_nothing(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_member(ALICE, narrate_me=False)
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("please don't read me"))
    await cog.on_message(scene.message("hi from bob", author_id=BOB, name="Bob", message_id=556))
    assert scene.spoken() == ["Bob said: hi from bob"]
    # Every server: the choice is the member's, not one server's.
    await storage.update_guild(GUILD + 1, narration_channel_id=20)
    scene.guild.id = GUILD + 1
    await cog.on_message(scene.message("elsewhere", message_id=557))
    assert scene.spoken() == ["Bob said: hi from bob"]


async def test_a_member_who_opted_out_does_not_bring_an_idle_bot(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_member(ALICE, narrate_me=False)
    idle(scene)
    await Narration(scene.bot).on_message(scene.message("anyone there?"))
    scene.bot.playback.join.assert_not_awaited()
    scene.queued.assert_not_called()


async def test_forget_me_forgets_the_opt_out_too(scene: Scene, storage: SQLiteStorage) -> None:
    await storage.update_member(ALICE, narrate_me=False)
    await storage.forget_member(ALICE)
    await Narration(scene.bot).on_message(scene.message("back again"))
    assert scene.spoken() == ["Alice said: back again"]


def on_stage(scene: Scene) -> Any:
    stage = create_autospec(discord.StageChannel, instance=True)
    stage.members, stage.user_limit = [], 0
    scene.voice_channel = stage
    scene.bot.playback.connected_channel.return_value = stage
    return stage


def stage_message(scene: Scene, content: str, *, speaker: bool, **extra: Any) -> Any:
    message = scene.message(content, **extra)
    message.author.voice.suppress = not speaker
    return message


async def test_a_stages_audience_is_read_unless_the_server_ignores_it(
    scene: Scene, storage: SQLiteStorage
) -> None:
    on_stage(scene)
    cog = Narration(scene.bot)
    await cog.on_message(stage_message(scene, "from the audience", speaker=False))
    assert scene.spoken() == ["Alice said: from the audience"]
    await storage.update_guild(GUILD, narration_ignore_stage_audience=True)
    await cog.on_message(stage_message(scene, "again", speaker=False, message_id=556))
    await cog.on_message(
        stage_message(scene, "a speaker", speaker=True, author_id=BOB, name="Bob", message_id=557)
    )
    assert scene.spoken() == ["Alice said: from the audience", "Bob said: a speaker"]


async def test_a_required_prefix_reads_only_its_messages_without_it(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_guild(GUILD, narration_require_prefix="!")
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("just chatting"))
    await cog.on_message(scene.message("!read this", message_id=556))
    assert scene.spoken() == ["Alice said: read this"]


async def test_repeated_characters_follow_the_servers_count(
    scene: Scene, storage: SQLiteStorage
) -> None:
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("nooooooo"))
    await storage.update_guild(GUILD, narration_max_repeat=0)
    await cog.on_message(scene.message("nooooooo", message_id=556))
    assert scene.spoken() == ["Alice said: nooo", "nooooooo"]


async def test_narration_reads_a_member_at_their_pace_and_never_in_their_second_voice(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_member(ALICE, pace="slow", voice_2="Puck")
    await Narration(scene.bot).on_message(scene.message("Joe: hi\nJane: hello"))
    ((request,),) = [c.args[1] for c in scene.queued.call_args_list]
    assert request.text == "Say at a slow pace: Alice said: Joe: hi Jane: hello"
    assert request.voice_2 is None


async def test_the_servers_pace_reads_members_who_chose_none(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_guild(GUILD, pace="fast")
    await Narration(scene.bot).on_message(scene.message("quick"))
    assert scene.spoken() == ["Say at a fast pace: Alice said: quick"]
