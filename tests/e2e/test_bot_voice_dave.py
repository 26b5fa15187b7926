"""Heard through DAVE, Discord's end-to-end voice encryption: the emulated voice server runs
the MLS group (as its delivery service and external sender) and every member in the call is
a client with its own davey session, decrypting each frame the bot sends and decoding it.

Each scenario has its own bot: one bot shared by the module (leaving and rejoining voice
between scenarios) saved 20 s but once stalled joining voice under load in the full suite,
and a stall there is indistinguishable from a DAVE failure."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.discord_emulator import Emulator
from tests.e2e.discord_emulator.listeners import MARKER, Listener
from tests.e2e.discord_emulator.rtp import RtpPacket
from tests.e2e.discord_emulator.state import (
    ALICE,
    BOB,
    BOT_ID,
    GUILD_ID,
    OWNER_ID,
    VOICE_CHANNEL_ID,
)
from tests.e2e.harness import BotProcess
from tests.e2e.test_bot_voice import FRAME, join
from tests.fake_segmind import FakeSegmind

LONG = (
    "A much longer sentence, spoken slowly and with care, so that members of the call can "
    "come and go while the bot is still reading it out loud to everyone listening."
)
MEDIUM = "Long enough for somebody to join the call while it is still being read out."


def listener(emulator: Emulator, user_id: int) -> Listener:
    return emulator.listeners[user_id]


async def heard_all(emulator: Emulator, who: Listener, seconds: float, within: float = 15) -> None:
    """Until `who` decoded `seconds` of speech and the end-of-speech silence after it."""
    await emulator.wait_for(
        lambda: who.audio.duration >= seconds * 0.9 and who.audio.silence_packets >= 5, within
    )


@pytest.mark.parametrize("latency", [0.02, 0.08])
async def test_a_member_hears_speak_from_the_first_frame_when_the_bot_was_not_in_voice(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind, latency: float
) -> None:
    emulator.dave_latency = latency  # Unfixed: 2 to 4 frames lost at 20 ms, 8 at 80 ms.
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    alice = listener(emulator, ALICE)
    group = emulator.current_voice[GUILD_ID].dave.group(VOICE_CHANNEL_ID)
    await emulator.wait_for(lambda: ALICE in group.packages, within=5)
    text = "Hello there, this is the very first thing said."
    await emulator.interact("speak", user_id=ALICE, text=text, play=True)
    expected = segmind.expected_duration(text)
    await heard_all(emulator, alice, expected)
    # Not one frame went out before the bot was in the group (all had the DAVE marker).
    assert alice.unmarked == 0
    assert alice.undecryptable == 0
    assert abs(alice.audio.packets - expected / FRAME) <= 1
    assert alice.audio.duration == pytest.approx(expected, rel=0.05)
    assert alice.audio.problems == []
    assert alice.errors == []


def heard_whole(who: Listener, expected: float) -> None:
    """Every frame was DAVE's and decrypted, and the clip was heard from its first frame."""
    assert (who.unmarked, who.undecryptable) == (0, 0)
    assert abs(who.audio.packets - expected / FRAME) <= 1
    assert who.audio.duration == pytest.approx(expected, rel=0.05)
    assert who.audio.problems == []


async def test_speak_right_after_join_is_heard_from_its_first_frame(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    """/join answers once the bot is connected, which may be before it is in the group: a
    /speak sent at once still waits for the group before its first frame."""
    emulator.dave_latency = 0.08
    await join(emulator)
    alice = listener(emulator, ALICE)
    text = "Asked for the moment the bot said it had joined."
    await emulator.interact("speak", user_id=ALICE, text=text, play=True)
    expected = segmind.expected_duration(text)
    await heard_all(emulator, alice, expected)
    heard_whole(alice, expected)


async def test_narration_that_brings_the_bot_is_heard_from_its_first_frame(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    emulator.dave_latency = 0.08
    answer = await emulator.interact("setup", user_id=OWNER_ID, subcommand="channel")
    await emulator.wait_for(lambda: answer.callback_type is not None, within=10)
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    alice = listener(emulator, ALICE)
    await emulator.send_message("Read me the moment you arrive, please.", author_id=ALICE)
    await emulator.wait_for(lambda: segmind.tts_calls == 1, within=15)
    spoken = segmind.requests[-1].json_body["text"]
    expected = segmind.expected_duration(spoken)
    await heard_all(emulator, alice, expected)
    heard_whole(alice, expected)


async def test_three_members_each_decrypt_every_frame(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await emulator.member_voice(BOB, VOICE_CHANNEL_ID)
    await emulator.member_voice(OWNER_ID, VOICE_CHANNEL_ID)
    await join(emulator)
    members = [listener(emulator, user) for user in (ALICE, BOB, OWNER_ID)]
    await emulator.wait_for(lambda: all(m.in_group for m in members), within=10)
    text = "Three people are listening to this sentence."
    await emulator.interact("speak", user_id=ALICE, text=text, play=True)
    expected = segmind.expected_duration(text)
    for member in members:
        await heard_all(emulator, member, expected)
    for member in members:
        assert (member.unmarked, member.undecryptable) == (0, 0)
        assert member.audio.duration == pytest.approx(expected, rel=0.05)
        assert member.audio.problems == []


async def test_a_member_joining_mid_clip_hears_the_rest_and_the_others_barely_notice(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await join(emulator)
    alice = listener(emulator, ALICE)
    await emulator.interact("speak", user_id=ALICE, text=MEDIUM, play=True)
    expected = segmind.expected_duration(MEDIUM)
    await emulator.wait_for(lambda: alice.audio.duration >= 1.0, within=15)
    await emulator.member_voice(BOB, VOICE_CHANNEL_ID)
    bob = listener(emulator, BOB)
    group = emulator.current_voice[GUILD_ID].dave.groups[VOICE_CHANNEL_ID]
    try:
        await emulator.wait_for(lambda: alice.audio.silence_packets >= 5, within=15)
    finally:
        print(f"alice lost {alice.undecryptable + alice.unmarked} frames; {alice.errors}")
        print(f"bob {bob.frames} frames, {bob.decrypted} decrypted; {bob.errors}")
        print(f"group: epoch {group.epoch}, refused {group.refused}")
    # Alice lost at most 200 ms to the epoch change; Bob heard the rest from his welcome.
    assert alice.audio.duration >= expected - 0.2
    assert alice.undecryptable + alice.unmarked <= 0.2 / FRAME
    assert bob.decrypted > 0
    assert bob.audio.duration >= expected - 1.0 - 1.0  # He came after a second of it.


async def test_a_member_who_left_mid_clip_decrypts_nothing_after_the_removal(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await emulator.member_voice(BOB, VOICE_CHANNEL_ID)
    await join(emulator)
    alice, bob = listener(emulator, ALICE), listener(emulator, BOB)
    await emulator.wait_for(lambda: alice.in_group and bob.in_group, within=10)
    await emulator.interact("speak", user_id=ALICE, text=LONG, play=True)
    await emulator.wait_for(lambda: bob.audio.duration >= 1.0, within=15)
    server = emulator.current_voice[GUILD_ID]
    group = server.dave.groups[VOICE_CHANNEL_ID]
    epoch = group.epoch
    await emulator.member_voice(BOB, None)
    # Bob's client keeps getting the frames (a leaky SFU): its stale group must not help.
    server.eavesdroppers.append(bob)
    await emulator.wait_for(lambda: group.epoch > epoch and not group.waiting, within=10)
    before = bob.decrypted
    frames = bob.frames
    await emulator.wait_for(lambda: bob.frames >= frames + 25, within=10)
    assert bob.decrypted == before
    assert alice.audio.duration > 0


async def test_two_members_connecting_at_once_leave_the_bot_heard_by_both(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await join(emulator)
    alice = listener(emulator, ALICE)
    await emulator.wait_for(lambda: alice.in_group, within=10)
    rejoins = bot.log().count("asking the voice server to add the bot again")
    await asyncio.gather(
        emulator.member_voice(BOB, VOICE_CHANNEL_ID),
        emulator.member_voice(OWNER_ID, VOICE_CHANNEL_ID),
    )
    bob, owner = listener(emulator, BOB), listener(emulator, OWNER_ID)
    await emulator.wait_for(lambda: bob.in_group and owner.in_group, within=10)
    text = "Can both of you who just arrived hear me now?"
    await emulator.interact("speak", user_id=ALICE, text=text, play=True)
    expected = segmind.expected_duration(text)
    for member in (alice, bob, owner):
        await heard_all(emulator, member, expected)
        # Within the 2 s the bot waits for its group, everyone decrypts all of it.
        assert member.audio.duration == pytest.approx(expected, rel=0.05)
        assert member.undecryptable == 0
    # The bot's group had parted from theirs (davey merged the wrong commit): it rejoined.
    assert bot.log().count("asking the voice server to add the bot again") == rejoins + 1


async def test_the_bots_frames_carry_the_dave_marker(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await join(emulator)
    alice = listener(emulator, ALICE)
    seen: list[bytes] = []
    hear = alice.hear

    def spy(packet: RtpPacket) -> bytes | None:
        seen.append(packet.opus)
        return hear(packet)

    alice.hear = spy  # type: ignore[method-assign]
    await emulator.interact("speak", user_id=ALICE, text="Marked frames.", play=True)
    await heard_all(emulator, alice, segmind.expected_duration("Marked frames."))
    speech = [frame for frame in seen if frame != b"\xf8\xff\xfe"]
    assert speech
    assert all(frame.endswith(MARKER) for frame in speech)


async def test_a_call_discord_runs_without_dave_is_still_heard(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    emulator.dave_version = 0
    await join(emulator)
    text = "No end to end encryption in this call."
    await emulator.interact("speak", user_id=ALICE, text=text, play=True)
    expected = segmind.expected_duration(text)
    audio = emulator.audio_for(GUILD_ID)
    await emulator.wait_for(lambda: audio.duration >= expected * 0.9, within=15)
    assert audio.problems == []
    assert emulator.listeners == {}


async def test_after_a_voice_server_change_the_member_decrypts_the_bot_again(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await join(emulator)
    alice = listener(emulator, ALICE)
    await emulator.interact("speak", user_id=ALICE, text=LONG, play=True)
    await emulator.wait_for(lambda: alice.audio.duration >= 1.0, within=15)
    new = await emulator.move_voice_server(GUILD_ID)
    # Everyone moves to the new server, where a new group is made, with the bot in it.
    await emulator.wait_for(
        lambda: any(c.dave is not None for c in new.connections) and alice.in_group, within=15
    )
    decrypted = alice.decrypted
    await emulator.wait_for(lambda: alice.decrypted >= decrypted + 25, within=15)
    assert len(alice.audio.ssrcs) == 2


async def test_dave_messages_the_bot_cannot_process_make_it_rejoin_then_leave_not_stay_unheard(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await join(emulator)
    alice = listener(emulator, ALICE)
    server = emulator.current_voice[GUILD_ID]
    await emulator.wait_for(lambda: server.dave.settled(VOICE_CHANNEL_ID, BOT_ID), within=10)
    group = server.dave.groups[VOICE_CHANNEL_ID]

    def added_again(epoch: int) -> bool:
        return group.epoch > epoch and server.dave.settled(VOICE_CHANNEL_ID, BOT_ID)

    for attempt in range(1, 4):  # Each one: op 31, then added again by Alice's commit.
        epoch = group.epoch
        await server.dave.send_unreadable(BOT_ID)
        await bot.wait_for_log(f"(attempt {attempt} of 3)", within=5)
        await emulator.wait_for(lambda e=epoch: added_again(e), within=10)
    await server.dave.send_unreadable(BOT_ID)  # One too many: the bot leaves.
    await bot.wait_for_log("leaving voice, members with waiting messages are told", within=5)
    await emulator.wait_for(lambda: emulator.bot_voice_channel() is None, within=10)
    # The next message connects afresh: a new voice session, a new group, and heard.
    text = "Back again, and heard."
    await emulator.interact("speak", user_id=ALICE, text=text, play=True)
    expected = segmind.expected_duration(text)
    before = alice.audio.duration
    await emulator.wait_for(lambda: alice.audio.duration - before >= expected * 0.95, within=15)
