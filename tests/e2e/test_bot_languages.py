"""The bot speaks the member's language, end to end: the real bot process answers the emulated
Discord, whose interactions carry each member's client locale and whose server has a preferred
locale, as Discord sends them. The command list goes out translated; a German member reads
German, an English one English; narration announces speakers in the server's language. None
of it costs a call: the fake Segmind counts exactly what an English bot would pay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.discord_emulator import Emulator
from tests.e2e.discord_emulator.records import Interaction
from tests.e2e.discord_emulator.state import ALICE, BOB, OWNER_ID, VOICE_CHANNEL_ID
from tests.e2e.harness import BotProcess, running_bot
from tests.e2e.test_bot_voice_previews import answered, open_menus, pick
from tests.fake_segmind import FakeSegmind


@pytest.fixture
async def bot(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> AsyncIterator[BotProcess]:
    """Alice's Discord is in German, Bob's in English; the server prefers German (sent in
    GUILD_CREATE, so set before the bot connects)."""
    emulator.world.members[ALICE].locale = "de"
    emulator.world.preferred_locale = "de"
    async with running_bot(emulator, segmind, tmp_path) as process:
        yield process


async def answer_to(emulator: Emulator, interaction: Interaction) -> str:
    message: dict[str, Any] = await emulator.wait_for(lambda: answered(interaction), within=15)
    return str(message.get("content") or "")


async def test_the_synced_commands_carry_every_languages_descriptions(
    bot: BotProcess, emulator: Emulator
) -> None:
    speak = await emulator.wait_for(lambda: emulator._command("speak"), within=10)
    assert speak["description"] == "Turn text into lifelike speech"
    assert speak["description_localizations"]["de"] == "Text in lebensechte Sprache verwandeln"
    assert speak["description_localizations"]["ja"] == "テキストを自然な音声にします"
    assert speak["name_localizations"] in ({}, None)  # Names stay English.
    text_option = next(o for o in speak["options"] if o["name"] == "text")
    assert text_option["description_localizations"]["fr"].startswith("Ce qu'il faut dire")
    menu = emulator._command("Speak this message")
    assert menu is not None
    assert menu["name_localizations"]["pt-BR"] == "Falar esta mensagem"


async def test_a_german_member_reads_german_and_an_english_one_english(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    german = await emulator.interact("voice", user_id=ALICE, subcommand="show")
    assert "🗣️ Stimme: nicht gewählt" in await answer_to(emulator, german)
    english = await emulator.interact("voice", user_id=BOB, subcommand="show")
    assert "🗣️ Voice: not chosen" in await answer_to(emulator, english)
    refused = await emulator.interact("skip", user_id=ALICE)
    assert await answer_to(emulator, refused) == (
        "Ich bin hier in keinem Sprachkanal. Nutze zuerst /join."
    )
    assert segmind.tts_calls == 0
    assert "Traceback" not in bot.log()


async def test_a_german_members_speech_and_preview_cost_what_an_english_ones_do(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    spoken = await emulator.interact("speak", user_id=ALICE, text="Guten Morgen zusammen!")
    await emulator.wait_for(lambda: segmind.tts_calls == 1, within=15)
    assert segmind.requests[-1].json_body["text"] == "Guten Morgen zusammen!"
    await emulator.wait_for(lambda: (spoken.original or {}).get("attachments"), within=15)

    menus = await open_menus(emulator, ALICE)
    assert menus["content"].startswith("🎧 Wähle eine Stimme")
    _, preview = await pick(emulator, menus, "Kore", ALICE)
    assert preview["content"].startswith("🎧 **Kore — Firm**. Gefällt sie dir?")
    assert preview["attachments"][0]["filename"] == "preview-kore-de.ogg"
    assert segmind.tts_calls == 2
    assert segmind.requests[-1].json_body["text"].startswith("Hallo, ich bin Kore.")
    # Another German listener gets the same clip: each language's preview is made once.
    emulator.world.members[BOB].locale = "de"
    _, again = await pick(emulator, await open_menus(emulator, BOB), "Kore", BOB)
    assert again["attachments"][0]["filename"] == "preview-kore-de.ogg"
    assert segmind.tts_calls == 2
    assert "Traceback" not in bot.log()


async def test_narration_announces_speakers_in_the_servers_language(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind
) -> None:
    setup = await emulator.interact("setup", user_id=OWNER_ID, subcommand="channel")
    await emulator.wait_for(lambda: setup.callback_type is not None, within=10)
    await emulator.member_voice(BOB, VOICE_CHANNEL_ID)
    # Bob reads English, but everyone hears the server's language.
    await emulator.send_message("Hello from Bob.", author_id=BOB)
    await emulator.wait_for(lambda: segmind.tts_calls == 1, within=15)
    said = segmind.requests[-1].json_body["text"]
    assert "bob sagte" in said.casefold()
    assert "said" not in said
    assert "Hello from Bob." in said
    assert "Traceback" not in bot.log()
