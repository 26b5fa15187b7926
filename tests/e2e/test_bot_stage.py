"""Stages, end to end: the bot joins a Stage channel in the audience (suppressed, so not
heard), then becomes a speaker with Mute Members or raises its hand without it, through the
emulated `PATCH /guilds/{guild}/voice-states/@me`; the emulator counts as heard only the audio
sent while the bot was not suppressed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.discord_emulator import Emulator, Interaction, ReceivedAudio
from tests.e2e.discord_emulator.records import RestRequest
from tests.e2e.discord_emulator.state import (
    ALICE,
    BOT_ID,
    BOT_ROLE_ID,
    GUILD_ID,
    MUTE_MEMBERS,
    STAGE_CHANNEL_ID,
    VOICE_CHANNEL_ID,
)
from tests.e2e.harness import running_bot
from tests.fake_segmind import FakeSegmind

FRAME = 0.020
VOICE_STATE_ROUTE = f"/guilds/{GUILD_ID}/voice-states/@me"


def content(interaction: Interaction) -> str:
    return str((interaction.original or {}).get("content") or "")


async def join_stage(emulator: Emulator) -> Interaction:
    """Alice goes on the Stage and runs /join; answered once the bot has done its part."""
    await emulator.member_voice(ALICE, STAGE_CHANNEL_ID)
    interaction = await emulator.interact("join", user_id=ALICE)
    await emulator.wait_for(lambda: "Joined" in content(interaction), within=15)
    assert emulator.bot_voice_channel() == STAGE_CHANNEL_ID
    return interaction


def voice_state_patches(emulator: Emulator) -> list[RestRequest]:
    return [r for r in emulator.requests if r.method == "PATCH" and r.path == VOICE_STATE_ROUTE]


def bot_voice_updates(emulator: Emulator) -> list[dict[str, Any]]:
    """Every VOICE_STATE_UPDATE about the bot the gateway sent it, in order."""
    return [
        payload["d"]
        for session in emulator.gateway.sessions
        for payload in session.sent
        if payload.get("t") == "VOICE_STATE_UPDATE" and payload["d"]["user_id"] == str(BOT_ID)
    ]


async def speak(emulator: Emulator, segmind: FakeSegmind, audio: ReceivedAudio, text: str) -> float:
    """Alice has `text` played; waits until that much speech and its closing silence arrived
    in `audio` (heard, or sent while suppressed). Returns the expected seconds."""
    expected = segmind.expected_duration(text)
    before, silence = audio.duration, audio.silence_packets
    await emulator.interact("speak", user_id=ALICE, text=text, play=True)
    await emulator.wait_for(
        lambda: audio.duration - before >= expected * 0.9 and audio.silence_packets >= silence + 5,
        within=20,
    )
    return expected


async def test_with_mute_members_the_bot_becomes_a_speaker_and_is_heard(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    emulator.world.role_permissions[BOT_ROLE_ID] |= MUTE_MEMBERS  # Before GUILD_CREATE.
    async with running_bot(emulator, segmind, tmp_path):
        joined = await join_stage(emulator)
        assert "⚠️" not in content(joined)
        (patch,) = voice_state_patches(emulator)
        assert patch.status == 204
        assert int(patch.json["channel_id"]) == STAGE_CHANNEL_ID
        assert patch.json["suppress"] is False
        # Joined in the audience, then made a speaker: both told to the bot by the gateway.
        updates = [u for u in bot_voice_updates(emulator) if u["channel_id"]]
        assert [u["suppress"] for u in updates] == [True, False]
        assert not emulator.world.voice_states[BOT_ID].suppress

        heard = emulator.audio_for(GUILD_ID)
        text = "Good evening, everyone on the stage."
        expected = await speak(emulator, segmind, heard, text)
        assert heard.duration == pytest.approx(expected, rel=0.10)
        assert heard.packets == pytest.approx(expected / FRAME, rel=0.10)
        assert heard.problems == []
        assert emulator.unheard_audio_for(GUILD_ID).packets == 0


async def test_without_mute_members_the_bot_raises_its_hand_and_is_not_heard(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    async with running_bot(emulator, segmind, tmp_path):
        joined = await join_stage(emulator)
        assert "raised my hand" in content(joined)
        assert "a stage moderator must invite me to speak" in content(joined)
        (patch,) = voice_state_patches(emulator)
        assert patch.status == 204
        assert int(patch.json["channel_id"]) == STAGE_CHANNEL_ID
        assert "suppress" not in patch.json
        assert patch.json["request_to_speak_timestamp"]
        state = emulator.world.voice_states[BOT_ID]
        assert state.suppress
        assert state.request_to_speak_timestamp == patch.json["request_to_speak_timestamp"]
        last = bot_voice_updates(emulator)[-1]
        assert last["suppress"] is True
        assert last["request_to_speak_timestamp"] == patch.json["request_to_speak_timestamp"]

        # Still in the audience: the bot sends its speech, but nobody hears it.
        heard, unheard = emulator.audio_for(GUILD_ID), emulator.unheard_audio_for(GUILD_ID)
        expected = await speak(emulator, segmind, unheard, "Can anybody hear me up here?")
        assert unheard.duration == pytest.approx(expected, rel=0.10)
        assert (heard.packets, heard.silence_packets, heard.duration) == (0, 0, 0.0)

        # A moderator invites it to speak: from then on it is heard.
        await emulator.invite_to_speak(BOT_ID)
        text = "Thank you for the invitation to speak."
        expected = await speak(emulator, segmind, heard, text)
        assert heard.duration == pytest.approx(expected, rel=0.10)
        assert heard.problems == []
        assert len(voice_state_patches(emulator)) == 1  # It did not ask again.


async def test_a_member_who_goes_from_voice_onto_the_stage_gets_the_bot_there_at_once(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    """Alice leaves the bot's voice channel for the Stage (the bot, alone, leaves) and runs
    /join straight away: answered within 15 s (it used to wait out the 30 s reconnect bound
    for the client it was disconnecting), and the PATCH names the Stage."""
    emulator.world.role_permissions[BOT_ROLE_ID] |= MUTE_MEMBERS
    async with running_bot(emulator, segmind, tmp_path):
        await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
        first = await emulator.interact("join", user_id=ALICE)
        await emulator.wait_for(lambda: "Joined" in content(first), within=15)
        assert emulator.bot_voice_channel() == VOICE_CHANNEL_ID
        assert voice_state_patches(emulator) == []  # No Stage, nothing to ask.
        await join_stage(emulator)
        (patch,) = voice_state_patches(emulator)
        assert (patch.status, int(patch.json["channel_id"])) == (204, STAGE_CHANNEL_ID)
        assert not emulator.world.voice_states[BOT_ID].suppress
        heard = emulator.audio_for(GUILD_ID)
        expected = await speak(emulator, segmind, heard, "Hello from the stage, after a move.")
        assert heard.duration == pytest.approx(expected, rel=0.10)
        assert emulator.unheard_audio_for(GUILD_ID).packets == 0
