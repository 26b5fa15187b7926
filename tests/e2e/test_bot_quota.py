"""A server's daily quota holds when requests arrive together: the calls still queued or being
made count against it, not only those already paid for, so a burst never buys more than the
quota (each call costs money)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.discord_emulator import Emulator, Interaction
from tests.e2e.discord_emulator.state import ALICE, OWNER_ID, VOICE_CHANNEL_ID
from tests.e2e.harness import BotProcess, running_bot
from tests.fake_segmind import FakeSegmind

QUOTA = 3
#: Each call takes this long and one is made at a time: a burst waits in the queue.
LATENCY = 0.5
QUOTA_REFUSAL = f"You've used your {QUOTA} requests for today"


@pytest.fixture
async def bot(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> AsyncIterator[BotProcess]:
    async with running_bot(
        emulator,
        segmind,
        tmp_path,
        MAX_CONCURRENCY="1",
        # Every message its own call, so the calls the burst asks for outnumber the quota.
        NARRATION_MERGE="false",
        # Room for the whole /speak burst: the quota, not the waiting cap, is what refuses.
        MAX_WAITING_PER_USER="10",
    ) as process:
        yield process


def answer(interaction: Interaction) -> str:
    return str((interaction.original or {}).get("content") or "")


async def set_quota(emulator: Emulator) -> None:
    saved = await emulator.interact(
        "settings", user_id=OWNER_ID, subcommand="limits", daily_quota=QUOTA
    )
    await emulator.wait_for(lambda: "Saved." in answer(saved), within=10)


async def test_a_burst_of_narrated_messages_pays_no_more_calls_than_the_quota(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await set_quota(emulator)
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    start = await emulator.interact("narrate", user_id=ALICE, subcommand="start")
    await emulator.wait_for(lambda: "Reading" in answer(start), within=15)
    texts = [f"Message number {n} of the burst." for n in range(1, 9)]
    for text in texts:
        await emulator.send_message(text, author_id=ALICE)
    await emulator.wait_for(lambda: segmind.tts_calls >= QUOTA, within=15)
    # One call at a time: a fourth would have started well within three calls' time.
    await asyncio.sleep(3 * LATENCY)
    spoken = [request.json_body["text"] for request in segmind.requests]
    assert len(spoken) == QUOTA, spoken
    # The first ones written are the ones read.
    assert [text in said for text, said in zip(texts, spoken, strict=False)] == [True] * QUOTA
    assert "Traceback" not in bot.log()


async def test_speak_requests_together_pay_no_more_calls_than_the_quota(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    await set_quota(emulator)
    speaks = []
    for n in range(1, QUOTA + 2):
        speaks.append(
            await emulator.interact("speak", user_id=ALICE, text=f"Request {n}.", play=False)
        )
        await asyncio.sleep(0.1)

    def delivered(interaction: Interaction) -> bool:
        return any(
            r.method == "PATCH" and r.files and r.status == 200
            for r in emulator.requests_for(interaction)
        )

    def settled() -> bool:
        return all(QUOTA_REFUSAL in answer(s) or delivered(s) for s in speaks)

    await emulator.wait_for(settled, within=15)
    refused = [s for s in speaks if QUOTA_REFUSAL in answer(s)]
    assert [delivered(s) for s in speaks].count(True) == QUOTA
    assert len(refused) == 1
    assert segmind.tts_calls == QUOTA
    assert (refused[0].original or {}).get("flags", 0) & 64  # Only the member sees it.
