"""Stages, end to end: the bot joins a Stage channel in the audience (suppressed, so not
heard), then becomes a speaker with Mute Members or raises its hand without it, through the
emulated `PATCH /guilds/{guild}/voice-states/@me`; the emulator counts as heard only the audio
sent while the bot was not suppressed. In the audience the bot makes nothing until a
moderator invites it, and gives up (telling the member) past its wait."""

from __future__ import annotations

import asyncio
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

        # A moderator invites it to speak: from then on it is heard.
        await emulator.invite_to_speak(BOT_ID)
        heard = emulator.audio_for(GUILD_ID)
        text = "Thank you for the invitation to speak."
        expected = await speak(emulator, segmind, heard, text)
        assert heard.duration == pytest.approx(expected, rel=0.10)
        assert heard.problems == []
        assert emulator.unheard_audio_for(GUILD_ID).packets == 0
        assert len(voice_state_patches(emulator)) == 1  # It did not ask again.


async def ask_from_the_audience(emulator: Emulator, text: str) -> Interaction:
    """Alice, on the Stage, has `text` played by a bot that is not there yet and may not make
    itself a speaker: it joins the audience and raises its hand. Answered once it has."""
    await emulator.member_voice(ALICE, STAGE_CHANNEL_ID)
    asked = await emulator.interact("speak", user_id=ALICE, text=text, play=True)
    answered = ("Waiting to speak in", "Playing in")  # Held, or (as it used to) played.
    await emulator.wait_for(
        lambda: voice_state_patches(emulator) and any(a in content(asked) for a in answered),
        within=15,
    )
    assert emulator.bot_voice_channel() == STAGE_CHANNEL_ID
    assert emulator.world.voice_states[BOT_ID].suppress
    (patch,) = voice_state_patches(emulator)
    assert patch.json["request_to_speak_timestamp"]  # Its hand is up.
    return asked


async def test_speech_asked_for_in_the_audience_is_made_only_once_invited_and_heard_whole(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    """Without Mute Members, /speak on a Stage: nothing is made (no call to Segmind) while
    the bot is in the audience, however long it waits; once a moderator invites it, the
    speech is made and heard from its start to its end, and nothing went to nobody."""
    async with running_bot(emulator, segmind, tmp_path):
        text = "Can anybody hear me up here on the stage?"
        asked = await ask_from_the_audience(emulator, text)
        await asyncio.sleep(2.0)  # Well past the fake's 0.05 s: a call would have been made.
        heard, unheard = emulator.audio_for(GUILD_ID), emulator.unheard_audio_for(GUILD_ID)
        assert segmind.tts_calls == 0
        assert (heard.packets, unheard.packets) == (0, 0)
        assert content(asked).startswith("⏳ Waiting to speak in")
        assert "raised my hand" in content(asked)
        assert "once I'm invited" in content(asked)

        await emulator.invite_to_speak(BOT_ID)
        expected = segmind.expected_duration(text)
        await emulator.wait_for(
            lambda: heard.duration >= expected * 0.9 and heard.silence_packets >= 5, within=20
        )
        assert heard.duration == pytest.approx(expected, rel=0.10)
        assert heard.packets == pytest.approx(expected / FRAME, rel=0.10)
        assert heard.problems == []
        assert segmind.tts_calls == 1
        assert unheard.packets == 0
        assert asked.followups == []  # Nothing went wrong to tell.


async def test_speech_nobody_invites_the_bot_to_make_is_given_up_and_its_member_told(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    """Past the wait for an invitation (VOICE_STAGE_WAIT, 2 s here), the member is told
    privately and nothing is ever made for that message, even if the bot is invited later."""
    async with running_bot(emulator, segmind, tmp_path, VOICE_STAGE_WAIT="2"):
        asked = await ask_from_the_audience(emulator, "Is this thing on, anyone?")
        await asyncio.sleep(2.0)
        assert segmind.tts_calls == 0
        assert "I wait up to 2 seconds" in content(asked)
        await emulator.wait_for(lambda: asked.followups, within=5)
        (told,) = asked.followups
        assert told["content"] == (
            "⚠️ No stage moderator invited me to speak within 2 seconds, so your message was "
            "not played."
        )
        assert told["flags"] & 64  # Ephemeral: only Alice sees it.
        assert segmind.tts_calls == 0

        await emulator.invite_to_speak(BOT_ID)
        await asyncio.sleep(1.5)
        assert segmind.tts_calls == 0
        assert emulator.audio_for(GUILD_ID).packets == 0
        assert emulator.unheard_audio_for(GUILD_ID).packets == 0


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
