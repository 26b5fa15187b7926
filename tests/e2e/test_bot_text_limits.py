"""The operator's MAX_TEXT_LENGTH bounds every request, even where a server set its own text
limit higher: a long message is then read from its start, cut to the operator's limit, by
narration and by "Speak this message", rather than refused for being too long."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.discord_emulator import Emulator, Interaction
from tests.e2e.discord_emulator.state import ALICE, GUILD_ID, OWNER_ID, VOICE_CHANNEL_ID
from tests.e2e.harness import BotProcess, running_bot
from tests.fake_segmind import FakeSegmind, Shape

OPERATOR_LIMIT = 300
SERVER_LIMIT = 1000
#: ~830 characters: past the operator's limit, within the server's.
LONG_MESSAGE = " ".join(f"Sentence {n} of a long story about the sea." for n in range(1, 21))
OPENING = "Sentence 1 of a long story"


@pytest.fixture
async def segmind() -> AsyncIterator[FakeSegmind]:
    # Short speech for long text: 300 characters are heard in ~3 s, not ~18 s.
    async with FakeSegmind(
        api_key="sk-e2e-fake", shape=Shape.OGG, latency=0.05, seconds_per_char=0.01
    ) as fake:
        yield fake


@pytest.fixture
async def bot(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> AsyncIterator[BotProcess]:
    async with running_bot(
        emulator, segmind, tmp_path, MAX_TEXT_LENGTH=str(OPERATOR_LIMIT)
    ) as process:
        yield process


def answer(interaction: Interaction) -> str:
    return str((interaction.original or {}).get("content") or "")


async def setting(emulator: Emulator, subcommand: str, **options: Any) -> None:
    saved = await emulator.interact("settings", user_id=OWNER_ID, subcommand=subcommand, **options)
    await emulator.wait_for(lambda: "Saved." in answer(saved), within=10)


async def raise_server_limits(emulator: Emulator) -> None:
    """The server allows 1,000 characters, for /speak and for a narrated message."""
    await setting(emulator, "limits", max_text_length=SERVER_LIMIT)
    await setting(emulator, "narration", max_length=SERVER_LIMIT)


def assert_read_from_its_start(segmind: FakeSegmind) -> list[str]:
    spoken = [request.json_body["text"] for request in segmind.requests]
    assert spoken, "nothing was read"
    assert OPENING in spoken[0][:40], spoken[0]
    assert sum(len(said) for said in spoken) <= OPERATOR_LIMIT, spoken
    return spoken


async def test_a_narrated_message_past_the_operators_limit_is_read_from_its_start(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    assert OPERATOR_LIMIT < len(LONG_MESSAGE) < SERVER_LIMIT
    await raise_server_limits(emulator)
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    start = await emulator.interact("narrate", user_id=ALICE, subcommand="start")
    await emulator.wait_for(lambda: "Reading" in answer(start), within=15)
    await emulator.send_message(LONG_MESSAGE, author_id=ALICE)
    try:
        await emulator.wait_for(lambda: segmind.tts_calls >= 1, within=8)
    except TimeoutError:
        why = [line for line in bot.log().splitlines() if "Not reading" in line]
        raise AssertionError(f"the message was not read: {why}") from None
    audio = emulator.audio_for(GUILD_ID)

    def all_heard() -> bool:
        expected = sum(segmind.expected_duration(r.json_body["text"]) for r in segmind.requests)
        return audio.duration >= expected * 0.9 and audio.silence_packets >= 5

    await emulator.wait_for(all_heard, within=20)
    spoken = assert_read_from_its_start(segmind)
    expected = sum(segmind.expected_duration(said) for said in spoken)
    assert audio.duration == pytest.approx(expected, rel=0.10)
    assert audio.problems == []


async def test_speak_this_message_past_the_operators_limit_is_spoken_from_its_start(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await raise_server_limits(emulator)
    message = await emulator.send_message(LONG_MESSAGE, author_id=ALICE)
    menu = await emulator.interact_with_message("Speak this message", message, user_id=ALICE)

    def posted() -> bool:
        return any(
            r.method == "PATCH" and r.files and r.status == 200 for r in emulator.requests_for(menu)
        )

    def refused() -> bool:
        return menu.callback_type == 4

    await emulator.wait_for(lambda: posted() or refused(), within=15)
    assert not refused(), answer(menu)
    assert_read_from_its_start(segmind)
    assert segmind.tts_calls == 1
