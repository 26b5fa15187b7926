"""/speak in a text channel, end to end: the real bot, the emulated Discord, fake Segmind."""

from __future__ import annotations

import io

import av
import pytest

from tests.e2e.discord_emulator import Emulator
from tests.e2e.discord_emulator.state import ALICE
from tests.e2e.harness import BotProcess
from tests.fake_segmind import FakeSegmind


def ogg_duration(data: bytes) -> float:
    with av.open(io.BytesIO(data), mode="r", format="ogg") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        samples: int = sum(frame.samples for frame in container.decode(stream))
        return samples / 48_000


async def test_speak_defers_then_attaches_ogg_opus_of_the_right_length(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    text = "Hello everyone, welcome to the emulated server!"
    interaction = await emulator.interact("speak", user_id=ALICE, text=text, play=False)

    def final_edit():
        edits = [
            r
            for r in emulator.requests_for(interaction)
            if r.method == "PATCH" and r.files and r.status == 200
        ]
        return edits[-1] if edits else None

    edit = await emulator.wait_for(final_edit, within=15)
    calls = emulator.requests_for(interaction)
    assert calls[0].path.endswith("/callback")
    assert calls[0].json == {"type": 5}
    assert calls[0].status == 200
    assert all(call.status is not None and call.status < 400 for call in calls)
    ((upload,),) = [edit.files]
    assert upload.filename.endswith(".ogg")
    assert ogg_duration(upload.data) == pytest.approx(segmind.expected_duration(text), abs=0.05)
    assert interaction.original is not None
    assert interaction.original["attachments"][0]["size"] == len(upload.data)


async def test_speak_in_a_dm_is_refused_at_no_cost(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    interaction = await emulator.interact("speak", user_id=ALICE, text="Free speech?", dm=True)
    await emulator.wait_for(lambda: interaction.callback_type is not None, within=10)
    (answer,) = emulator.requests_for(interaction)
    assert answer.status in (200, 204)
    assert answer.json is not None
    assert answer.json["type"] == 4
    assert answer.json["data"]["flags"] & 64  # Only the member sees it.
    assert "only in a server" in answer.json["data"]["content"]
    assert segmind.tts_calls == 0
    assert "Traceback" not in bot.log()
