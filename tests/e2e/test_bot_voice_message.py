"""/speak as a native voice message, end to end: the emulator refuses the upload unless it is
what Discord documents (flag 8192, no content, one Ogg Opus file with `duration_secs` and a
waveform of at most 256 points), and the file and waveform are checked against each other.

Who may send one is Discord's to say: the emulator resolves the member's and the bot's
permissions in the channel (roles and overwrites), refuses the bot's posts it does not allow,
and, as Discord does, turns a follow-up to a deferral still "thinking" into the answer itself,
private if the deferral was."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import av
import pytest

from tests.e2e.discord_emulator import Emulator, Interaction
from tests.e2e.discord_emulator.messages import EPHEMERAL, IS_VOICE_MESSAGE, MAX_WAVEFORM_POINTS
from tests.e2e.discord_emulator.records import RestRequest
from tests.e2e.discord_emulator.state import (
    ALICE,
    BOB,
    BOT_ROLE_ID,
    SEND_VOICE_MESSAGES,
    TEXT_CHANNEL_ID,
)
from tests.e2e.harness import BotProcess, running_bot
from tests.fake_segmind import FakeSegmind


def decoded(data: bytes) -> tuple[str, int, int, float]:
    """Codec, channels, sample rate and length of an Ogg file, by decoding every frame."""
    with av.open(io.BytesIO(data), mode="r", format="ogg") as container:
        stream = container.streams.audio[0]
        codec = stream.codec_context
        samples = sum(frame.samples for frame in container.decode(stream))
        return codec.name, codec.channels, codec.sample_rate, samples / codec.sample_rate


async def test_speak_posts_a_voice_message_as_discord_documents_it(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    text = "This reply arrives as a voice message, with its waveform bubble."
    interaction = await emulator.interact(
        "speak", user_id=ALICE, text=text, play=False, voice_message=True
    )

    def posted() -> RestRequest | None:
        return next(
            (
                r
                for r in emulator.requests
                if r.method == "POST"
                and r.path == f"/channels/{TEXT_CHANNEL_ID}/messages"
                and r.status == 200
            ),
            None,
        )

    upload = await emulator.wait_for(posted, within=20)
    assert isinstance(upload.json, dict)
    assert upload.json["flags"] == IS_VOICE_MESSAGE
    assert not upload.json.get("content")
    (file,) = upload.files
    (meta,) = upload.json["attachments"]
    assert file.content_type == "audio/ogg"
    codec, channels, rate, duration = decoded(file.data)
    assert (codec, channels, rate) == ("opus", 1, 48_000)
    assert duration == pytest.approx(segmind.expected_duration(text), abs=0.1)
    assert meta["duration_secs"] == pytest.approx(duration, abs=0.05)
    points = base64.b64decode(meta["waveform"])
    assert len(points) == min(MAX_WAVEFORM_POINTS, math.ceil(duration / 0.1))
    assert max(points) == 255  # Scaled to the loudest point: the fake's tone is not silence.
    stored = emulator.channel_messages[-1]
    assert stored["flags"] == IS_VOICE_MESSAGE
    assert stored["attachments"][0]["waveform"] == meta["waveform"]

    # Having no text, it replies to the public answer, which names the member.
    await emulator.wait_for(
        lambda: "Voice message" in ((interaction.original or {}).get("content") or ""), within=10
    )
    answer = interaction.original or {}
    assert f"<@{ALICE}>" in answer["content"]
    assert not answer["flags"] & EPHEMERAL
    assert stored["message_reference"]["message_id"] == answer["id"]


def carrying_files(interaction: Interaction) -> list[dict[str, Any]]:
    """The interaction's messages with a file: its answer and its follow-ups."""
    messages = [interaction.original, *interaction.followups]
    return [m for m in messages if m is not None and m["attachments"]]


async def test_the_file_instead_of_a_voice_message_is_public_even_from_the_cache(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    emulator.world.overwrite(TEXT_CHANNEL_ID, BOT_ROLE_ID, deny=SEND_VOICE_MESSAGES)
    text = "No voice messages from the bot in here, so this comes as a file."
    async with running_bot(emulator, segmind, tmp_path):
        # Fresh speech, then the same again from the cache: then the answer is still
        # "thinking" when the file is ready, and a follow-up would become that answer.
        for attempt in ("fresh", "cached"):
            interaction = await emulator.interact(
                "speak", user_id=ALICE, text=text, play=False, voice_message=True
            )

            def done(interaction: Interaction = interaction) -> bool:
                return "📎" in ((interaction.original or {}).get("content") or "")

            await emulator.wait_for(done, within=20)
            await emulator.wait_for(lambda i=interaction: carrying_files(i), within=5)
            (message,) = carrying_files(interaction)
            assert not message["flags"] & EPHEMERAL, f"{attempt}: only the member sees the file"
            assert message["attachments"][0]["filename"].endswith(".ogg")
            assert "Send Voice Messages" in (interaction.original or {})["content"]
    assert segmind.tts_calls == 1  # The second came from the cache.
    assert not emulator.channel_messages  # No voice message the bot may not post.


async def test_a_member_denied_voice_messages_is_refused_privately_for_free(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    quiet = emulator.world.add_role("No voice notes", members=(ALICE,))
    emulator.world.overwrite(TEXT_CHANNEL_ID, quiet, deny=SEND_VOICE_MESSAGES)
    text = "A voice message only some of us may send here."
    async with running_bot(emulator, segmind, tmp_path):
        refused = await emulator.interact(
            "speak", user_id=ALICE, text=text, play=False, voice_message=True
        )
        await emulator.wait_for(lambda: refused.original is not None, within=10)
        answer = refused.original or {}
        assert refused.callback_type == 4  # Answered at once, not deferred.
        assert answer["flags"] & EPHEMERAL
        assert answer["content"].startswith("You may not send voice messages in this channel.")
        assert segmind.tts_calls == 0
        assert not emulator.channel_messages

        # Bob, in the same channel, may: his voice message replies to his public answer.
        allowed = await emulator.interact(
            "speak", user_id=BOB, text=text, play=False, voice_message=True
        )
        await emulator.wait_for(lambda: emulator.channel_messages, within=20)
        (voice_message,) = emulator.channel_messages
        assert voice_message["flags"] == IS_VOICE_MESSAGE
        await emulator.wait_for(
            lambda: "Voice message" in ((allowed.original or {}).get("content") or ""), within=10
        )
        named = allowed.original or {}
        assert f"<@{BOB}>" in named["content"]
        assert not named["flags"] & EPHEMERAL
        assert voice_message["referenced_message"]["id"] == named["id"]
