"""Narration that is behind, end to end: with the server's two-speaker setting on, two
members' waiting messages become one two-voice call, and all of it is heard in order; a
message edited while it waits in such a call is heard as edited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.speech.voices import voice_for_user
from tests.e2e.discord_emulator import Emulator
from tests.e2e.discord_emulator.state import ALICE, BOB, GUILD_ID, OWNER_ID, VOICE_CHANNEL_ID
from tests.e2e.harness import BotProcess, running_bot
from tests.fake_segmind import FakeSegmind

#: Long enough that messages written meanwhile wait behind the first call.
LATENCY = 2.0


@pytest.fixture
async def bot(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> AsyncIterator[BotProcess]:
    # One call at a time: the key's pace, made visible without waiting out a real minute.
    async with running_bot(emulator, segmind, tmp_path, MAX_CONCURRENCY="1") as process:
        yield process


def replied(interaction: object) -> str:
    return str((getattr(interaction, "original", None) or {}).get("content") or "")


async def test_two_members_waiting_messages_share_one_two_voice_call(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    setting = await emulator.interact(
        "settings", user_id=OWNER_ID, subcommand="narration", merge_speakers=True
    )
    await emulator.wait_for(lambda: setting.callback_type is not None, within=10)
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    await emulator.member_voice(BOB, VOICE_CHANNEL_ID)
    start = await emulator.interact("narrate", user_id=ALICE, subcommand="start")
    await emulator.wait_for(lambda: "Reading" in replied(start), within=15)

    await emulator.send_message("First, while nothing waits.", author_id=ALICE)
    await bot.wait_for_log("attempt 1 started", within=10)
    # The first call is being made; these two wait behind it and share the next call.
    await emulator.send_message("Second, from Alice.", author_id=ALICE)
    await emulator.send_message("Third, from Bob.", author_id=BOB)
    await emulator.wait_for(lambda: segmind.tts_calls == 2, within=15)

    merged = segmind.requests[-1].json_body
    assert merged["voice_1"] == voice_for_user(ALICE).name
    assert merged["voice_2"] == voice_for_user(BOB).name
    lines = merged["text"].splitlines()
    assert len(lines) == 2
    # Alice was heard last, so her line has no "alice said"; Bob's turn announces him.
    assert lines[0] == "alice: Second, from Alice."
    assert lines[1] == "bob: bob said: Third, from Bob."
    expected = sum(segmind.expected_duration(r.json_body["text"]) for r in segmind.requests)
    audio = emulator.audio_for(GUILD_ID)
    await emulator.wait_for(
        lambda: audio.duration >= expected * 0.9 and audio.silence_packets >= 5, within=20
    )
    assert audio.duration == pytest.approx(expected, rel=0.10)
    assert audio.problems == []
    await emulator.wait_for(lambda: segmind.tts_calls == 2, within=1)  # nothing more was paid


async def test_an_edit_to_a_merged_waiting_message_is_heard_as_edited(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    # DEBUG: the merge is logged, and nothing Discord sees tells when it happened.
    async with running_bot(
        emulator, segmind, tmp_path, MAX_CONCURRENCY="1", LOG_LEVEL="DEBUG"
    ) as bot:
        await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
        start = await emulator.interact("narrate", user_id=ALICE, subcommand="start")
        await emulator.wait_for(lambda: "Reading" in replied(start), within=15)

        await emulator.send_message("First, while nothing waits.", author_id=ALICE)
        await bot.wait_for_log("attempt 1 started", within=10)
        second = await emulator.send_message("Second, with a tpyo in it.", author_id=ALICE)
        await emulator.send_message("Third, after the second.", author_id=ALICE)
        await bot.wait_for_log("Narration behind: 2 messages of 1 members", within=10)
        # Still waiting behind the first call: the edit comes before its turn.
        assert segmind.tts_calls == 1
        await emulator.edit_message(second, "Second, now spelled right.")
        await emulator.wait_for(lambda: segmind.tts_calls == 2, within=15)

        spoken = [request.json_body["text"] for request in segmind.requests]
        assert "spelled right" in spoken[1]
        assert "Third, after the second." in spoken[1]
        assert not any("tpyo" in said for said in spoken)
        expected = sum(segmind.expected_duration(said) for said in spoken)
        audio = emulator.audio_for(GUILD_ID)
        await emulator.wait_for(
            lambda: audio.duration >= expected * 0.9 and audio.silence_packets >= 5, within=20
        )
        assert audio.duration == pytest.approx(expected, rel=0.10)
        assert audio.problems == []
        await emulator.wait_for(lambda: segmind.tts_calls == 2, within=1)  # nothing more paid
