"""Voice, end to end: the bot joins through the emulated gateway, handshakes with the emulated
voice server over TLS, and the audio it sends over UDP is decrypted and decoded here."""

from __future__ import annotations

import pytest

from tests.e2e.discord_emulator import Emulator, ReceivedAudio
from tests.e2e.discord_emulator.state import ALICE, GUILD_ID, OWNER_ID, VOICE_CHANNEL_ID
from tests.e2e.harness import BotProcess
from tests.fake_segmind import FakeSegmind

FRAME = 0.020


async def join(emulator: Emulator) -> None:
    """Alice enters the voice channel and runs /join; the bot is connected when it says so."""
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    interaction = await emulator.interact("join", user_id=ALICE)

    def joined() -> bool:
        original = interaction.original or {}
        return "Joined" in (original.get("content") or "")

    await emulator.wait_for(joined, within=15)
    assert emulator.bot_voice_channel() == VOICE_CHANNEL_ID


def heard(emulator: Emulator) -> ReceivedAudio:
    return emulator.audio_for(GUILD_ID)


async def wait_for_clip(emulator: Emulator, seconds: float, within: float = 15) -> ReceivedAudio:
    """Wait until at least `seconds` of speech arrived and the end-of-speech silence followed."""
    audio = heard(emulator)
    await emulator.wait_for(
        lambda: audio.duration >= seconds * 0.9 and audio.silence_packets >= 5, within=within
    )
    return audio


async def test_join_then_speak_is_heard_in_voice(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await join(emulator)
    text = "Testing one two three in the voice channel."
    await emulator.interact("speak", user_id=ALICE, text=text, play=True)
    expected = segmind.expected_duration(text)
    audio = await wait_for_clip(emulator, expected)
    assert audio.duration == pytest.approx(expected, rel=0.10)
    assert audio.packets == pytest.approx(expected / FRAME, rel=0.10)
    assert audio.problems == []


async def test_narration_reads_a_members_message_aloud(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    start = await emulator.interact("narrate", user_id=ALICE, subcommand="start")
    await emulator.wait_for(lambda: "Reading" in ((start.original or {}).get("content") or ""), 15)
    await emulator.send_message("The quick brown fox jumps over the lazy dog.", author_id=ALICE)
    audio = await emulator.wait_for(
        lambda: heard(emulator) if heard(emulator).silence_packets >= 5 else None, within=15
    )
    spoken = segmind.requests[-1].json_body["text"]
    assert "quick brown fox" in spoken
    assert audio.duration == pytest.approx(segmind.expected_duration(spoken), rel=0.10)
    assert audio.problems == []


async def test_bot_leaves_when_the_last_member_leaves(bot: BotProcess, emulator: Emulator) -> None:
    await join(emulator)
    await emulator.member_voice(ALICE, None)
    left = await emulator.wait_for(
        lambda: (
            any(op.get("channel_id") is None for op in emulator.gateway.voice_state_ops())
            and emulator.bot_voice_channel() is None
        ),
        within=10,
    )
    assert left


async def test_voice_server_change_mid_clip_keeps_the_audio_coming(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await join(emulator)
    text = "A longer sentence, so that the voice server can move while it is being spoken aloud."
    await emulator.interact("speak", user_id=ALICE, text=text, play=True)
    expected = segmind.expected_duration(text)
    audio = heard(emulator)
    await emulator.wait_for(lambda: audio.duration >= 1.0, within=15)
    first = emulator.current_voice[GUILD_ID]
    new = await emulator.move_voice_server(GUILD_ID)
    assert new is not first
    await emulator.wait_for(
        lambda: any(c.secret_key for c in new.connections) and len(audio.ssrcs) == 2, within=15
    )
    await wait_for_clip(emulator, expected)
    # Audio lost while reconnecting is tolerated; the clip must not stop at the move.
    assert audio.duration >= expected * 0.8


async def test_a_slow_voice_server_change_loses_no_message_written_meanwhile(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    start = await emulator.interact("narrate", user_id=ALICE, subcommand="start")
    await emulator.wait_for(lambda: "Reading" in ((start.original or {}).get("content") or ""), 15)
    # Discord drains the voice server; the new one takes seconds to answer the handshake.
    new = await emulator.move_voice_server(GUILD_ID, identify_delay=3.0)
    texts = ["First message while the voice server moves.", "Second one, still moving."]
    for text in texts:
        await emulator.send_message(text, author_id=ALICE)
    # Written while the bot was re-handshaking, not after.
    assert not any(connection.secret_key for connection in new.connections)
    await emulator.wait_for(lambda: segmind.tts_calls == len(texts), within=15)
    spoken = [request.json_body["text"] for request in segmind.requests]
    assert [text in said for text, said in zip(texts, spoken, strict=True)] == [True, True]
    expected = sum(segmind.expected_duration(said) for said in spoken)
    audio = heard(emulator)
    await emulator.wait_for(
        lambda: audio.duration >= expected * 0.9 and audio.silence_packets >= 5, within=20
    )
    assert audio.duration == pytest.approx(expected, rel=0.10)
    assert audio.problems == []
    assert any(connection.secret_key for connection in new.connections)


async def test_after_setup_a_message_from_a_member_in_voice_brings_the_bot(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    answer = await emulator.interact("setup", user_id=OWNER_ID, subcommand="channel")
    await emulator.wait_for(lambda: answer.callback_type is not None, within=10)
    assert "read aloud from now on" in ((answer.original or {}).get("content") or "")
    assert emulator.bot_voice_channel() is None  # Setting it up joins nothing.
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    await emulator.send_message("Is anybody listening to this channel?", author_id=ALICE)
    await emulator.wait_for(lambda: emulator.bot_voice_channel() == VOICE_CHANNEL_ID, within=15)
    audio = await emulator.wait_for(
        lambda: heard(emulator) if heard(emulator).silence_packets >= 5 else None, within=15
    )
    spoken = segmind.requests[-1].json_body["text"]
    assert "anybody listening" in spoken
    assert audio.duration == pytest.approx(segmind.expected_duration(spoken), rel=0.10)
    assert audio.problems == []
