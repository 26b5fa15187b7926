"""`/voices` end to end: the real bot process answers the emulated Discord's select-menu and
button interactions (type 3, as the gateway delivers them). The preview is private, decodes
as Opus speech, is made by one call for the whole bot, and "Use this voice" saves the choice."""

from __future__ import annotations

import io
from typing import Any

import av

from tests.e2e.discord_emulator import Emulator
from tests.e2e.discord_emulator.records import Interaction
from tests.e2e.discord_emulator.state import ALICE, BOB
from tests.e2e.harness import BotProcess
from tests.fake_segmind import FakeSegmind

EPHEMERAL = 1 << 6


def decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data), mode="r", format="ogg") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        return sum(frame.samples for frame in container.decode(stream)) / 48_000


def answered(interaction: Interaction) -> dict[str, Any] | None:
    """The interaction's final message: answered at once, or its deferral resolved."""
    message = interaction.original
    if message is None or int(message.get("flags") or 0) & (1 << 7):
        return None
    return message


async def open_menus(emulator: Emulator, user_id: int) -> dict[str, Any]:
    opened = await emulator.interact("voices", user_id=user_id)
    message = await emulator.wait_for(lambda: answered(opened), within=10)
    assert message["flags"] & EPHEMERAL
    return dict(message)


def menu_with(message: dict[str, Any], voice: str) -> str:
    for row in message["components"]:
        for item in row["components"]:
            if any(option["value"] == voice for option in item.get("options", [])):
                return str(item["custom_id"])
    raise AssertionError(f"no menu offers {voice}")


async def pick(
    emulator: Emulator, message: dict[str, Any], voice: str, user_id: int
) -> tuple[Interaction, dict[str, Any]]:
    picked = await emulator.interact_with_component(
        message, menu_with(message, voice), user_id=user_id, values=[voice]
    )
    preview = await emulator.wait_for(lambda: answered(picked), within=15)
    return picked, dict(preview)


def uploaded(emulator: Emulator, interaction: Interaction) -> bytes:
    (upload,) = [file for r in emulator.requests_for(interaction) for file in r.files]
    return upload.data


async def test_a_member_hears_a_voice_privately_and_makes_it_theirs(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    menus = await open_menus(emulator, ALICE)
    assert [len(row["components"][0]["options"]) for row in menus["components"]] == [15, 15]
    picked, preview = await pick(emulator, menus, "Kore", ALICE)
    assert preview["flags"] & EPHEMERAL
    assert "Kore — Firm" in preview["content"]
    (attachment,) = preview["attachments"]
    assert attachment["filename"].endswith(".ogg")
    audio = uploaded(emulator, picked)
    assert decoded_seconds(audio) > 0.5
    assert segmind.tts_calls == 1
    assert "Kore" in segmind.requests[-1].json_body["text"]

    buttons = {item["label"]: item for row in preview["components"] for item in row["components"]}
    assert set(buttons) == {"Use this voice", "Use as second voice"}
    used = await emulator.interact_with_component(
        preview, buttons["Use this voice"]["custom_id"], user_id=ALICE
    )
    saved = await emulator.wait_for(lambda: answered(used), within=10)
    assert "Kore — Firm" in saved["content"]
    assert saved["flags"] & EPHEMERAL
    shown = await emulator.interact("voice", user_id=ALICE, subcommand="show")
    described = await emulator.wait_for(lambda: answered(shown), within=10)
    assert "Kore — Firm** (your choice)" in described["content"]

    # Bob hears the same voice: the preview kept on disk, no second call.
    again, _ = await pick(emulator, await open_menus(emulator, BOB), "Kore", BOB)
    assert uploaded(emulator, again) == audio
    assert segmind.tts_calls == 1
    assert "Traceback" not in bot.log()
