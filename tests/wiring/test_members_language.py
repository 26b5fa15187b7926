"""The bot speaks the member's language, through the whole bot: real interaction payloads
(their `locale` set as a German, French or Japanese Discord client sets it), the real command
tree and cogs, and the fake Segmind counting calls. Translation is text only: it never adds a
call, and what Gemini is asked to say is the member's own words."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.locales import ENGLISH, text
from bot.speech.voices import get_voice
from bot.tree import CatalogueTranslator, catalogue_key
from tests import discord_fakes as df
from tests.wiring.harness import ALICE, Wired
from tests.wiring.test_settings import content, started
from tests.wiring.test_voice_previews import MEMBER, components, open_menus, pick

__all__ = ["started"]


async def payloads(wired: Wired) -> list[dict[str, Any]]:
    """The command list exactly as a sync sends it, with the bot's own translator."""
    tree = wired.bot.tree
    translator = tree.translator
    assert isinstance(translator, CatalogueTranslator)  # Installed by setup_hook.
    return [
        await command.get_translated_payload(tree, translator) for command in tree.get_commands()
    ]


def walk(payload: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every command, subcommand and option in a payload, by its catalogue key."""
    here = f"{path}.{payload['name']}" if path else f"cmd.{payload['name']}"
    found = [(here, payload)]
    for option in payload.get("options", []):
        found += walk(option, here)
    return found


async def test_every_description_goes_out_in_every_language_with_english_as_the_source(
    wired: Wired,
) -> None:
    seen = choices = 0
    for payload in await payloads(wired):
        if payload.get("type") in (2, 3):  # A message or user menu: named, not described.
            assert payload["name_localizations"]["de"] == text(f"menu.{payload['name']}", "de")
            continue
        for key, item in walk(payload):
            seen += 1
            assert item["description"] == text(key, ENGLISH), key  # The decorator's English.
            localized = item.get("description_localizations", {})
            for locale, language in [
                ("de", "de"),
                ("fr", "fr"),
                ("es-ES", "es"),
                ("es-419", "es"),
                ("pt-BR", "pt-BR"),
                ("ja", "ja"),
            ]:
                assert localized[locale] == text(key, language), (key, locale)
            assert "en-US" not in localized  # English is the source, not a translation.
            assert "name_localizations" not in item or not item["name_localizations"]
            for choice in item.get("choices", []):
                choices += 1
                assert choice["name_localizations"]["de"] == text(f"choice.{choice['value']}", "de")
    assert seen > 60
    assert choices > 10  # The paces, emoji and /settings reset's.


async def test_the_translator_leaves_names_and_strings_it_does_not_hold_alone() -> None:
    translator = CatalogueTranslator()
    context: app_commands.TranslationContextTypes = app_commands.TranslationContext(
        location=app_commands.TranslationContextLocation.other, data=None
    )
    assert catalogue_key(context) is None
    german = discord.Locale.german
    assert await translator.translate(app_commands.locale_str("x"), german, context) is None


async def test_a_german_member_reads_their_settings_and_errors_in_german(started: Any) -> None:
    wired = await started()
    (shown,) = await wired.invoke(
        df.in_locale(df.slash_command("voice", subcommand="show", user_id=ALICE), "de")
    )
    assert "🗣️ Stimme: nicht gewählt" in content(shown)
    assert "Deine Nachrichten werden vorgelesen: ja" in content(shown)
    (refused,) = await wired.invoke(
        df.in_locale(df.slash_command("join", user_id=ALICE, permissions=MEMBER), "de")
    )
    assert content(refused) == text("error.not_in_voice", "de")
    assert content(refused) == "Tritt zuerst einem Sprachkanal bei und versuch es dann noch mal."
    (english,) = await wired.invoke(df.slash_command("join", user_id=ALICE, permissions=MEMBER))
    assert content(english) == "Join a voice channel first, then try again."
    assert wired.segmind.tts_calls == 0


async def test_a_refusal_from_the_core_is_told_in_the_members_language(started: Any) -> None:
    wired = await started()
    (blank,) = await wired.invoke(
        df.in_locale(
            df.slash_command("speak", user_id=ALICE, permissions=MEMBER, text=" "), "es-ES"
        )
    )
    assert content(blank) == "No hay texto que decir: escribe algo primero."
    (empty,) = await wired.invoke(
        df.in_locale(
            df.slash_command("dictionary", subcommand="add", user_id=ALICE, word="!!", say_as="x"),
            "fr",
        )
    )
    assert content(empty) == "Le mot doit contenir au moins une lettre ou un chiffre."
    assert wired.segmind.tts_calls == 0


async def test_a_japanese_members_speech_costs_the_same_one_call_and_says_their_words(
    started: Any,
) -> None:
    wired = await started()
    words = "こんにちは、みなさん。"
    calls = await wired.invoke(
        df.in_locale(
            df.slash_command("speak", user_id=ALICE, permissions=MEMBER, text=words, voice="Kore"),
            "ja",
        )
    )
    assert wired.segmind.tts_calls == 1
    assert wired.segmind.requests[0].json_body["text"] == words  # Nothing added or translated.
    assert calls[-1].files  # The speech, as for anyone.
    assert "**Kore**" in content(calls[-1])


async def test_a_german_member_hears_the_german_preview_made_once_for_everyone(
    started: Any,
) -> None:
    wired = await started()
    german = df.in_locale(df.slash_command("voices", user_id=ALICE, permissions=MEMBER), "de")
    (opened,) = await wired.invoke(german)
    assert opened.json is not None
    assert opened.json["data"]["content"] == text("voices.open", "de")
    message = df.bot_message(opened)
    picked = df.in_locale(
        df.component(
            message["components"][0]["components"][0]["custom_id"],
            user_id=ALICE,
            message=message,
            values=["Kore"],
            permissions=MEMBER,
        ),
        "de",
    )
    heard = (await wired.press(picked))[-1]
    label = get_voice("Kore").label
    assert content(heard) == text("voices.heard", "de", label=label)
    assert [b["label"] for b in components(heard)] == [
        "Diese Stimme nutzen",
        "Als zweite Stimme nutzen",
    ]
    ((name, _),) = heard.files.items()
    assert name == "preview-kore-de.ogg"
    assert wired.segmind.requests[-1].json_body["text"] == (
        "Hallo, ich bin Kore. So klinge ich, wenn ich deine Nachrichten vorlese."
    )
    assert wired.segmind.tts_calls == 1
    again = (await wired.press({**picked, "id": str(df.snowflake())}))[-1]
    assert again.files[name] == heard.files[name]
    assert wired.segmind.tts_calls == 1  # Each language's preview is made once.
    english = await pick(wired, ALICE, await open_menus(wired, ALICE), "Kore")
    assert "preview-kore-en.ogg" in english.files
    assert wired.segmind.tts_calls == 2
