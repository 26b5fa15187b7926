"""Narration's rules where they meet money and movement: every rule checked before an idle bot
joins anyone, edits to merged waiting messages, the text limit in force, unexpected errors
reported, and waiting messages too old to read. Through spec'd Discord objects and a real
SQLite storage, like tests/cogs/test_narration.py, whose scene this reuses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest.mock import create_autospec

import discord
import pytest

from bot.storage import SQLiteStorage, UsageRecord
from cogs.narration import Narration
from tests.cogs.test_narration import (
    ALICE,
    GUILD,
    TEXT,
    Scene,
    behind,
    idle,
    scene,
    storage,
)

__all__ = ["scene", "storage"]  # Fixtures, used by name.

ROLE = 4242


def edit_of(scene: Scene, message_id: int, content: str) -> Any:
    edit = create_autospec(discord.RawMessageUpdateEvent, instance=True)
    edit.message_id, edit.guild_id = message_id, GUILD
    edit.message = scene.message(content, message_id=message_id)
    return edit


@pytest.mark.parametrize(
    "rule",
    [
        {"allowed_role_id": ROLE},  # Alice lacks the role.
        {"allow_voice": False},
        {"daily_quota": 1},  # Alice used her one call today.
    ],
)
async def test_a_member_the_server_refuses_never_brings_the_idle_bot(
    scene: Scene, storage: SQLiteStorage, rule: dict[str, Any]
) -> None:
    await storage.update_guild(GUILD, **rule)
    await storage.record_usage(UsageRecord(GUILD, ALICE, datetime.now(UTC), 200, 1.0, 2.0, 0.005))
    idle(scene)
    await Narration(scene.bot).on_message(scene.message("let me in"))
    scene.bot.playback.join.assert_not_awaited()
    assert scene.spoken() == []


async def test_a_member_the_server_allows_still_brings_the_idle_bot(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_guild(GUILD, allowed_role_id=ROLE, daily_quota=2)
    idle(scene)
    message = scene.message("hello")
    role = create_autospec(discord.Role, instance=True)
    role.id = ROLE
    message.author.roles = [role]
    await Narration(scene.bot).on_message(message)
    scene.bot.playback.join.assert_awaited_once()
    assert scene.spoken() == ["Alice said: hello"]


async def test_a_bot_that_cannot_join_gives_the_admitted_call_back(
    scene: Scene, storage: SQLiteStorage
) -> None:
    from bot.errors import VoicePermissionError

    idle(scene)
    scene.bot.playback.join.side_effect = VoicePermissionError("#voice")
    await Narration(scene.bot).on_message(scene.message("hello"))
    assert scene.spoken() == []  # Nothing started, nothing spent.


async def test_an_edit_to_a_merged_waiting_message_is_read_as_edited(scene: Scene) -> None:
    line = behind(scene)
    cog = Narration(scene.bot)
    for n, text in enumerate(["first", "secnod", "third"]):
        await cog.on_message(scene.message(text, message_id=600 + n))
    assert scene.spoken()[-1] == "Alice said: first secnod third"
    await cog.on_raw_message_edit(edit_of(scene, 601, "second"))
    assert scene.spoken()[-1] == "Alice said: first second third"
    assert [u.source_id for u in line.queue] == [600]  # Same place, one call.
    # Edited to nothing worth reading: the others are still read.
    await cog.on_raw_message_edit(edit_of(scene, 602, ";not for reading"))
    assert scene.spoken()[-1] == "Alice said: first second"


async def test_an_edit_too_long_for_its_merged_call_is_read_from_its_start(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_guild(GUILD, max_text_length=80)
    behind(scene)
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("first", message_id=600))
    await cog.on_message(scene.message("second", message_id=601))
    await cog.on_raw_message_edit(edit_of(scene, 601, "second " + "and on " * 30))
    spoken = scene.spoken()[-1]
    assert spoken.startswith("Alice said: first second and on")
    assert spoken.endswith("and more")
    assert len(spoken) <= 80


async def test_a_server_limit_above_the_operators_reads_a_long_message_from_its_start(
    make_settings: Any, scene: Scene, storage: SQLiteStorage
) -> None:
    scene.bot.settings = make_settings(max_text_length=300)
    scene.bot.services.speech.settings = scene.bot.settings
    await storage.update_guild(GUILD, max_text_length=1000)
    await Narration(scene.bot).on_message(scene.message("word " * 160))
    spoken = " ".join(scene.spoken())
    assert spoken.startswith("Alice said: word word")
    assert spoken.endswith("and more")
    assert len(spoken) <= 300


async def test_an_unexpected_error_is_logged_with_a_reference_and_told_in_the_channel(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    scene.bot.services.speech.admit = create_autospec(
        scene.bot.services.speech.admit, side_effect=KeyError("boom")
    )
    message = scene.message("this breaks")
    message.channel.send = create_autospec(discord.TextChannel.send)
    await Narration(scene.bot).on_message(message)
    (line,) = message.channel.send.await_args.args
    assert "something went wrong on my side (ref `" in line
    ref = line.split("`")[1]
    assert any(ref in r.getMessage() and r.exc_info for r in caplog.records)
    # The operator hears of it too, under the same reference.
    where, reported_ref, error = scene.bot.report_unexpected.call_args.args
    assert (where, reported_ref, type(error)) == ("narration", ref, KeyError)


async def test_waiting_messages_past_the_servers_bound_are_skipped_and_told_once(
    scene: Scene, storage: SQLiteStorage
) -> None:
    now = [0.0]
    await storage.update_guild(GUILD, narration_stale_after=300)
    line = behind(scene)
    scene.bot.settings = scene.bot.settings.model_copy(update={"narration_merge": False})
    cog = Narration(scene.bot)
    cog.reader._clock = lambda: now[0]
    messages = [scene.message(f"message {n}", message_id=600 + n) for n in range(3)]
    send = create_autospec(discord.TextChannel.send)
    for message in messages:
        message.channel.send = send
        message.channel.id = TEXT
        await cog.on_message(message)
        now[0] += 100
    assert [u.source_id for u in line.queue] == [600, 601, 602]
    now[0] = 401  # 600 and 601 waited more than 300 s; 602 only 201 s.
    assert cog.reader.backlog() == (3, 401)
    room = cog.reader.rooms.find(GUILD)
    assert room is not None
    await cog.reader._sweep(room, GUILD)
    assert [u.source_id for u in line.queue] == [602]
    assert cog.reader.backlog() == (1, 201)
    assert cog.reader.stale_skipped == 2
    (told,) = send.await_args.args
    assert told == "⏭️ Skipped 2 messages waiting for more than 5 minutes (narration was behind)."
    await cog.reader.close()


async def test_the_skipped_notice_is_in_the_servers_language(
    scene: Scene, storage: SQLiteStorage
) -> None:
    """The whole channel reads it, so it follows the server's preferred locale."""
    now = [0.0]
    await storage.update_guild(GUILD, narration_stale_after=300)
    behind(scene)
    scene.bot.settings = scene.bot.settings.model_copy(update={"narration_merge": False})
    cog = Narration(scene.bot)
    cog.reader._clock = lambda: now[0]
    send = create_autospec(discord.TextChannel.send)
    for n in range(2):
        message = scene.message(f"message {n}", message_id=700 + n)
        message.channel.send = send
        message.channel.id = TEXT
        message.channel.guild.preferred_locale = discord.Locale.german
        await cog.on_message(message)
    now[0] = 401
    room = cog.reader.rooms.find(GUILD)
    assert room is not None
    await cog.reader._sweep(room, GUILD)
    (told,) = send.await_args.args
    assert told == (
        "⏭️ 2 Nachrichten übersprungen, die länger als 5 Minuten gewartet haben "
        "(das Vorlesen hing hinterher)."
    )
    await cog.reader.close()


async def test_a_stale_message_already_paid_for_is_still_read(
    scene: Scene, storage: SQLiteStorage
) -> None:
    now = [0.0]
    line = behind(scene, state="running")
    cog = Narration(scene.bot)
    cog.reader._clock = lambda: now[0]
    await cog.on_message(scene.message("being made", message_id=600))
    now[0] = 10_000
    room = cog.reader.rooms.find(GUILD)
    assert room is not None
    await cog.reader._sweep(room, GUILD)
    assert [u.source_id for u in line.queue] == [600]
    await storage.update_guild(GUILD, narration_stale_after=0)
    scene.stream.current.state = "queued"
    await cog.reader._sweep(room, GUILD)  # 0: never skipped, however late.
    assert [u.source_id for u in line.queue] == [600]
    await cog.reader.close()


async def test_turkish_letters_beside_a_dictionary_entry_with_i_are_still_read(
    scene: Scene, storage: SQLiteStorage
) -> None:
    await storage.update_guild(GUILD, pronunciations=[("gif", "jif")])
    cog = Narration(scene.bot)
    await cog.on_message(scene.message("a GİF, a gıf and a gif", message_id=900))
    assert scene.spoken() == ["Alice said: a GİF, a gıf and a jif"]


async def test_the_backlog_counts_each_waiting_message_not_each_call_nor_the_one_playing(
    scene: Scene,
) -> None:
    now = [0.0]
    line = behind(scene)
    cog = Narration(scene.bot)
    assert scene.bot.narration is cog.reader  # The bot's metrics read this reader.
    cog.reader._clock = lambda: now[0]
    assert cog.reader.backlog() == (0, 0.0)
    await cog.on_message(scene.message("now playing", message_id=599, author_id=2002, name="Bob"))
    now[0] = 5
    for n, text in enumerate(["first", "second", "third"]):
        await cog.on_message(scene.message(text, message_id=600 + n))
    assert [u.source_id for u in line.queue] == [599, 600]  # Alice's three share one call.
    now[0] = 30
    assert cog.reader.backlog() == (4, 30)
    line.queue.pop(0)  # Bob's message begins to play: it no longer waits.
    assert cog.reader.backlog() == (3, 25)
    await cog.cog_unload()
    assert scene.bot.narration is None
