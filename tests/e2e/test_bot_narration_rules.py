"""The server's rules come before the bot joins by itself: a message in the narration channel
from a member the rules refuse (no allowed role, speech in voice off, daily quota used) leaves
an idle bot where it was, out of voice, and costs no call. A member the rules allow, in the
same setup, still brings it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.discord_emulator import Emulator, RoleChoice
from tests.e2e.discord_emulator.records import Interaction
from tests.e2e.discord_emulator.state import ALICE, BOB, GUILD_ID, OWNER_ID, VOICE_CHANNEL_ID
from tests.e2e.harness import BotProcess, running_bot
from tests.fake_segmind import FakeSegmind

#: How long an idle bot is given to (wrongly) join after a refused message.
SETTLE = 2.5


@pytest.fixture
def speakers_role(emulator: Emulator) -> int:
    """A "Speakers" role that Bob has and Alice has not, made before the bot connects."""
    return emulator.world.add_role("Speakers", members=(BOB,))


@pytest.fixture
async def bot(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path, speakers_role: int
) -> AsyncIterator[BotProcess]:
    async with running_bot(emulator, segmind, tmp_path) as process:
        yield process


def replied(interaction: Interaction) -> str:
    return str((interaction.original or {}).get("content") or "")


async def setting(emulator: Emulator, subcommand: str, **options: Any) -> None:
    """The owner (Manage Server) changes a server setting; waits until it is saved."""
    answer = await emulator.interact("settings", user_id=OWNER_ID, subcommand=subcommand, **options)
    await emulator.wait_for(lambda: answer.callback_type is not None, within=10)
    assert "Saved." in replied(answer), answer.original


async def set_up_narration_channel(emulator: Emulator) -> None:
    answer = await emulator.interact("setup", user_id=OWNER_ID, subcommand="channel")
    await emulator.wait_for(lambda: answer.callback_type is not None, within=10)
    assert "read aloud from now on" in replied(answer)


def joins(emulator: Emulator) -> list[dict[str, object]]:
    """Every opcode 4 by which the bot asked to be in a voice channel."""
    return [op for op in emulator.gateway.voice_state_ops() if op.get("channel_id")]


async def assert_stays_idle(
    emulator: Emulator, segmind: FakeSegmind, bot: BotProcess, *, joins_before: int, calls: int
) -> None:
    """Nothing comes of the message: no opcode 4 to join, not in voice, no call paid."""
    await asyncio.sleep(SETTLE)
    assert len(joins(emulator)) == joins_before, "the bot asked to join voice"
    assert emulator.bot_voice_channel() is None
    assert segmind.tts_calls == calls
    assert "Traceback" not in bot.log()


async def assert_reads(emulator: Emulator, segmind: FakeSegmind, words: str, calls: int) -> None:
    """The bot joins the member's channel and the message is paid for once."""
    await emulator.wait_for(lambda: emulator.bot_voice_channel() == VOICE_CHANNEL_ID, within=15)
    await emulator.wait_for(lambda: segmind.tts_calls == calls, within=15)
    assert words in segmind.requests[-1].json_body["text"]


async def test_a_member_without_the_allowed_role_does_not_bring_the_bot(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind, speakers_role: int
) -> None:
    await set_up_narration_channel(emulator)
    await setting(emulator, "access", role=RoleChoice(speakers_role))
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    await emulator.send_message("Can the bot hear me without the role?", author_id=ALICE)
    await assert_stays_idle(emulator, segmind, bot, joins_before=0, calls=0)
    # Bob has the role: the same message from him brings the bot.
    await emulator.member_voice(BOB, VOICE_CHANNEL_ID)
    await emulator.send_message("Bob has the role, so read this.", author_id=BOB)
    await assert_reads(emulator, segmind, "Bob has the role", calls=1)


async def test_with_speech_in_voice_off_a_message_does_not_bring_the_bot(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await set_up_narration_channel(emulator)
    await setting(emulator, "access", allow_voice=False)
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    await emulator.send_message("Voice is off on this server.", author_id=ALICE)
    await assert_stays_idle(emulator, segmind, bot, joins_before=0, calls=0)
    await setting(emulator, "access", allow_voice=True)
    await emulator.send_message("Voice is back on now.", author_id=ALICE)
    await assert_reads(emulator, segmind, "Voice is back on", calls=1)


async def test_a_member_past_the_daily_quota_does_not_bring_the_bot_back(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await set_up_narration_channel(emulator)
    await setting(emulator, "limits", daily_quota=1)
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    await emulator.send_message("My one message for today.", author_id=ALICE)
    await assert_reads(emulator, segmind, "one message for today", calls=1)
    audio = emulator.audio_for(GUILD_ID)
    await emulator.wait_for(lambda: audio.silence_packets >= 5, within=15)
    # Alice leaves; the bot follows, its channel empty.
    await emulator.member_voice(ALICE, None)
    await emulator.wait_for(lambda: emulator.bot_voice_channel() is None, within=10)
    joined = len(joins(emulator))
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    await emulator.send_message("One more, past my quota.", author_id=ALICE)
    await assert_stays_idle(emulator, segmind, bot, joins_before=joined, calls=1)
