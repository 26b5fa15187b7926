"""Starting and stopping the real bot process against the emulator."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.discord_emulator import Emulator
from tests.e2e.discord_emulator.state import ALICE, VOICE_CHANNEL_ID
from tests.e2e.harness import BotProcess, start_bot
from tests.e2e.test_bot_voice import join
from tests.fake_segmind import FakeSegmind


async def test_sigterm_in_voice_exits_cleanly_within_8_seconds(
    bot: BotProcess, emulator: Emulator
) -> None:
    await join(emulator)
    code = await bot.terminate(within=8)
    assert code == 0, bot.log()
    assert "Traceback" not in bot.log()
    # It left voice on its way out rather than vanishing from the channel.
    assert emulator.gateway.voice_state_ops()[-1]["channel_id"] is None


async def test_refused_message_content_intent_starts_without_narration(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    emulator.allowed_privileged_intents = 0
    bot = await start_bot(emulator, segmind, tmp_path)
    try:
        first, second = emulator.identifies[0]["intents"], emulator.identifies[-1]["intents"]
        assert first & (1 << 15)
        assert not second & (1 << 15)
        await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
        answer = await emulator.interact("narrate", user_id=ALICE, subcommand="start")
        await emulator.wait_for(lambda: answer.callback_type is not None, within=10)
        reply = emulator.requests_for(answer)[0].json["data"]["content"]
        assert "Message Content intent" in reply
    finally:
        assert await bot.terminate(within=8) == 0


async def test_sigterm_while_speech_is_being_made_tells_the_member_within_8_seconds(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    # `docker stop` allows 10 s; the bot must be done, members told, well within that.
    segmind.latency = 60.0  # A call that cannot finish before the shutdown.
    interaction = await emulator.interact("speak", user_id=ALICE, text="Too late", play=False)
    await emulator.wait_for(lambda: segmind.tts_calls == 1, within=10)
    code = await bot.terminate(within=8)
    assert code == 0, bot.log()
    told = (interaction.original or {}).get("content") or ""
    assert "restarting" in told
    assert "Traceback" not in bot.log()
