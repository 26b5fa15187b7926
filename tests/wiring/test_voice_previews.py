"""`/voices` through the whole bot: the real command tree, real component interactions (select
menus and buttons as the gateway delivers them, handled by dynamic items), real SQLite and the
fake Segmind counting calls. Each preview is made once for the whole bot, kept on disk across
restarts, and paid by the bot, never from a member's quota."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.audio import is_ogg_opus
from bot.config import Settings
from bot.speech.voices import VOICES
from tests import discord_fakes as df
from tests.wiring.harness import Wired, wire
from tests.wiring.test_settings import ALICE, BOB, content, started

__all__ = ["started"]

MEMBER = df.MEMBER_PERMISSIONS


def components(call: df.RestCall) -> list[dict[str, Any]]:
    assert call.json is not None
    data = call.json.get("data", call.json)
    return [item for row in data.get("components") or [] for item in row["components"]]


async def open_menus(wired: Wired, user_id: int) -> dict[str, Any]:
    (answer,) = await wired.invoke(df.slash_command("voices", user_id=user_id, permissions=MEMBER))
    assert answer.json is not None
    assert answer.json["data"]["flags"] & df.EPHEMERAL
    return df.bot_message(answer)


def menu_with(message: dict[str, Any], voice: str) -> str:
    for row in message["components"]:
        for item in row["components"]:
            if any(option["value"] == voice for option in item.get("options", [])):
                return str(item["custom_id"])
    raise AssertionError(f"no menu offers {voice}")


async def pick(wired: Wired, user_id: int, message: dict[str, Any], voice: str) -> df.RestCall:
    """Pick `voice` in its menu; the answer that carries the preview."""
    calls = await wired.press(
        df.component(
            menu_with(message, voice),
            user_id=user_id,
            message=message,
            values=[voice],
            permissions=MEMBER,
        )
    )
    return calls[-1]


async def press(wired: Wired, user_id: int, message: dict[str, Any], label: str) -> df.RestCall:
    (button,) = [
        item
        for row in message["components"]
        for item in row["components"]
        if item.get("label") == label
    ]
    calls = await wired.press(
        df.component(button["custom_id"], user_id=user_id, message=message, permissions=MEMBER)
    )
    return calls[-1]


async def test_the_menus_hold_every_voice_once_grouped_by_character(started: Any) -> None:
    wired = await started()
    message = await open_menus(wired, ALICE)
    menus = [item for row in message["components"] for item in row["components"]]
    assert len(menus) == 2
    assert all(len(menu["options"]) <= 25 for menu in menus)
    offered = [option["value"] for menu in menus for option in menu["options"]]
    assert sorted(offered) == sorted(voice.name for voice in VOICES)
    characters = [option["description"] for menu in menus for option in menu["options"]]
    assert characters == sorted(characters, key=str.casefold)
    assert wired.segmind.tts_calls == 0


async def test_a_preview_is_private_made_once_and_kept_across_restarts(started: Any) -> None:
    first = await started()
    message = await open_menus(first, ALICE)
    heard = await pick(first, ALICE, message, "Kore")
    assert "Kore — Firm" in content(heard)
    assert heard.json is not None
    assert heard.json["flags"] & df.EPHEMERAL
    ((name, audio),) = heard.files.items()
    assert name.endswith(".ogg")
    assert is_ogg_opus(audio)
    assert [b["label"] for b in components(heard)] == ["Use this voice", "Use as second voice"]
    assert first.segmind.tts_calls == 1
    assert "Kore" in first.segmind.requests[-1].json_body["text"]
    again = await pick(first, BOB, await open_menus(first, BOB), "Kore")
    assert again.files[name] == audio
    assert first.segmind.tts_calls == 1
    await first.bot.close()

    second = await started()  # Restarted: the old menu still works, the preview is on disk.
    kept = await pick(second, ALICE, message, "Kore")
    assert kept.files[name] == audio
    assert second.segmind.tts_calls == 1


async def test_use_this_voice_and_use_as_second_voice_save_the_members_choice(
    started: Any,
) -> None:
    wired = await started()
    heard = await pick(wired, ALICE, await open_menus(wired, ALICE), "Sulafat")
    preview = df.bot_message(heard)
    saved = await press(wired, ALICE, preview, "Use this voice")
    assert "Sulafat — Warm" in content(saved)
    assert (await wired.bot.services.storage.get_member(ALICE)).voice == "Sulafat"
    await wired.bot.close()

    wired = await started()  # The buttons outlive a restart too.
    second = await press(wired, ALICE, preview, "Use as second voice")
    assert "second voice in your dialogues" in content(second)
    assert (await wired.bot.services.storage.get_member(ALICE)).voice_2 == "Sulafat"
    await wired.invoke(
        df.slash_command(
            "speak", user_id=ALICE, permissions=MEMBER, text="Joe: Hi!\nJane: Hello.", voice="Puck"
        )
    )
    assert wired.segmind.requests[-1].json_body["voice_2"] == "Sulafat"
    await wired.invoke(df.slash_command("speak", user_id=ALICE, permissions=MEMBER, text="Solo."))
    assert "voice_2" not in wired.segmind.requests[-1].json_body


async def test_only_the_member_who_opened_the_menu_can_use_it(started: Any) -> None:
    wired = await started()
    message = await open_menus(wired, ALICE)
    refused = await wired.press(
        df.component(menu_with(message, "Kore"), user_id=BOB, message=message, values=["Kore"])
    )
    assert "someone else's" in content(refused[-1])
    assert wired.segmind.tts_calls == 0
    preview = df.bot_message(await pick(wired, ALICE, message, "Kore"))
    answer = await press(wired, BOB, preview, "Use this voice")
    assert "someone else's" in content(answer)
    assert (await wired.bot.services.storage.get_member(BOB)).voice is None


@pytest.fixture
async def unhurried(make_settings: Callable[..., Settings]) -> AsyncIterator[Wired]:
    """A bot whose key allows many calls a minute, so all 30 previews are made at once."""
    async with wire(make_settings, segmind_rpm=1000) as wired:
        yield wired


async def test_previews_cost_no_members_quota_and_at_most_one_call_per_voice(
    unhurried: Wired,
) -> None:
    wired = unhurried
    await wired.invoke(
        df.slash_command("settings", subcommand="limits", user_id=ALICE, daily_quota=1)
    )
    for _ in range(2):
        message = await open_menus(wired, BOB)
        for voice in VOICES:
            heard = await pick(wired, BOB, message, voice.name)
            assert voice.label in content(heard)
    assert wired.segmind.tts_calls == len(VOICES) == 30
    # Bob's one request today is still his: the previews were the bot's.
    await wired.invoke(df.slash_command("speak", user_id=BOB, permissions=MEMBER, text="Mine."))
    assert wired.segmind.tts_calls == 31


async def test_a_server_that_allows_no_speech_files_gets_no_preview(started: Any) -> None:
    wired = await started()
    await wired.invoke(
        df.slash_command("settings", subcommand="access", user_id=ALICE, allow_files=False)
    )
    heard = await pick(wired, BOB, await open_menus(wired, BOB), "Kore")
    assert "turned off speech files" in content(heard)
    assert wired.segmind.tts_calls == 0


async def test_voices_open_in_a_dm_like_the_other_personal_settings(started: Any) -> None:
    wired = await started()
    (answer,) = await wired.invoke(df.in_dm(df.slash_command("voices", user_id=ALICE)))
    assert len(components(answer)) == 2
    assert wired.segmind.tts_calls == 0


async def test_a_member_without_the_servers_role_gets_no_preview(started: Any) -> None:
    wired = await started()
    await wired.bot.services.storage.update_guild(df.GUILD_ID, allowed_role_id=4242)
    heard = await pick(wired, BOB, await open_menus(wired, BOB), "Kore")
    assert "members with the <@&4242> role" in content(heard)
    assert wired.segmind.tts_calls == 0
