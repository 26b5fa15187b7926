"""/speak as a native voice message, end to end: the emulator refuses the upload unless it is
what Discord documents (flag 8192, no content, one Ogg Opus file with `duration_secs` and a
waveform of at most 256 points), and the file and waveform are checked against each other."""

from __future__ import annotations

import base64
import io
import math

import av
import pytest

from tests.e2e.discord_emulator import Emulator
from tests.e2e.discord_emulator.records import RestRequest
from tests.e2e.discord_emulator.rest import IS_VOICE_MESSAGE, MAX_WAVEFORM_POINTS
from tests.e2e.discord_emulator.state import ALICE, TEXT_CHANNEL_ID
from tests.e2e.harness import BotProcess
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

    # The interaction is answered privately, with a short line.
    await emulator.wait_for(
        lambda: "voice message" in ((interaction.original or {}).get("content") or ""), within=10
    )
    assert (interaction.original or {}).get("flags", 0) & 64
