"""A member's opt-out, through the real bot process and the Discord emulator: once Alice says
`/voice set narrate_me:false`, her messages in the narration channel neither bring an idle bot
nor, with the bot already reading, are read or paid for; Bob's still are."""

from __future__ import annotations

import asyncio

from tests.e2e.discord_emulator import Emulator
from tests.e2e.discord_emulator.state import ALICE, BOB, VOICE_CHANNEL_ID
from tests.e2e.harness import BotProcess
from tests.e2e.test_bot_narration_rules import (
    SETTLE,
    assert_reads,
    assert_stays_idle,
    replied,
    set_up_narration_channel,
)
from tests.fake_segmind import FakeSegmind


async def opt_out(emulator: Emulator, user_id: int) -> None:
    answer = await emulator.interact("voice", user_id=user_id, subcommand="set", narrate_me=False)
    await emulator.wait_for(lambda: answer.callback_type is not None, within=10)
    assert "Narration reads your messages: no" in replied(answer), answer.original


async def test_an_opted_out_member_is_not_read_and_not_paid_for(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await set_up_narration_channel(emulator)
    await opt_out(emulator, ALICE)
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    await emulator.send_message("Please never read me aloud.", author_id=ALICE)
    await assert_stays_idle(emulator, segmind, bot, joins_before=0, calls=0)
    # Bob has not opted out: he brings the bot, and is read.
    await emulator.member_voice(BOB, VOICE_CHANNEL_ID)
    await emulator.send_message("Bob is happy to be read.", author_id=BOB)
    await assert_reads(emulator, segmind, "Bob is happy", calls=1)
    # With the bot reading in her channel, Alice is still not read, and costs nothing.
    await emulator.send_message("Still not me, thanks.", author_id=ALICE)
    await emulator.send_message("And Bob once more.", author_id=BOB)
    await emulator.wait_for(lambda: segmind.tts_calls == 2, within=15)
    await asyncio.sleep(SETTLE)
    assert segmind.tts_calls == 2
    said = [request.json_body["text"] for request in segmind.requests]
    assert not any("not me" in text or "never read me" in text for text in said), said
    assert "Traceback" not in bot.log()
