"""Every language says every message, with the same fields, within Discord's lengths."""

from __future__ import annotations

from datetime import date

import pytest

from bot.locales import (
    CATALOGUES,
    ENGLISH,
    LANGUAGES,
    Line,
    language_of,
    line,
    placeholders,
    render,
    text,
)

OTHERS = [language for language in LANGUAGES if language != ENGLISH]
#: A field's sample value where a number will not do (a date formatted by the message).
SAMPLES: dict[str, object] = {"day": date(2026, 12, 6)}


def sample(template: str) -> dict[str, object]:
    return {name: SAMPLES.get(name, 1) for name in placeholders(template)}


ENGLISH_MESSAGES = CATALOGUES[ENGLISH]


def test_the_bot_speaks_english_german_french_spanish_brazilian_portuguese_and_japanese() -> None:
    assert set(LANGUAGES) >= {"en", "de", "fr", "es", "pt-BR", "ja"}


@pytest.mark.parametrize("language", OTHERS)
def test_every_language_has_every_english_key_and_no_other(language: str) -> None:
    messages = CATALOGUES[language]
    assert sorted(set(ENGLISH_MESSAGES) - set(messages)) == [], "missing"
    assert sorted(set(messages) - set(ENGLISH_MESSAGES)) == [], "not in English"


@pytest.mark.parametrize("language", OTHERS)
def test_every_translation_fills_in_exactly_the_english_fields(language: str) -> None:
    wrong = {
        key: (sorted(placeholders(template)), sorted(placeholders(ENGLISH_MESSAGES[key])))
        for key, template in CATALOGUES[language].items()
        if key in ENGLISH_MESSAGES and placeholders(template) != placeholders(ENGLISH_MESSAGES[key])
    }
    assert wrong == {}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_renders_with_its_fields(language: str) -> None:
    for key, template in CATALOGUES[language].items():
        assert text(key, language, **sample(template)), key


@pytest.mark.parametrize("language", LANGUAGES)
def test_command_strings_fit_discords_limits(language: str) -> None:
    """Discord refuses the whole command list when one description passes 100 characters, a
    choice's name 100, or a message menu's name 32."""
    for key, value in CATALOGUES[language].items():
        rendered = text(key, language, **sample(value))
        if key.startswith(("cmd.", "choice.")):
            assert 1 <= len(rendered) <= 100, (key, len(rendered))
        if key.startswith("menu."):
            assert 1 <= len(rendered) <= 32, (key, len(rendered))


@pytest.mark.parametrize("language", OTHERS)
def test_a_translation_is_not_left_in_english(language: str) -> None:
    """Long sentences identical to the English were not translated; short words ("normal",
    a label with only fields) may rightly read the same."""
    same = [
        key
        for key, value in CATALOGUES[language].items()
        if value == ENGLISH_MESSAGES.get(key) and len(value.split()) > 3
    ]
    assert same == []


@pytest.mark.parametrize(
    ("locale", "language"),
    [
        ("de", "de"),
        ("fr", "fr"),
        ("es-ES", "es"),
        ("es-419", "es"),
        ("pt-BR", "pt-BR"),
        ("ja", "ja"),
        ("en-US", "en"),
        ("en-GB", "en"),
        ("ko", "en"),
        (None, "en"),
        ("", "en"),
    ],
)
def test_a_discord_locale_picks_its_language_and_any_other_reads_english(
    locale: str | None, language: str
) -> None:
    assert language_of(locale) == language


def test_a_message_is_filled_in_in_the_members_language() -> None:
    assert text("playback.stopped", "de", count=3) == "⏹️ Angehalten; 3 wartende entfernt."
    assert text("playback.stopped", "ko", count=3) == "⏹️ Stopped; cleared 3 waiting."


def test_a_line_reads_as_english_and_renders_again_in_a_members_language() -> None:
    refusal = line("control.skip", channel="<#1>")
    assert isinstance(refusal, str)
    assert refusal == "Only members listening in <#1> can skip someone else's message."
    assert render(refusal, "fr") == text("control.skip", "fr", channel="<#1>")
    assert render("Segmind said no", "fr") == "Segmind said no"


def test_a_line_inside_a_line_is_rendered_in_the_same_language() -> None:
    how = Line("voice_message.leave_out")
    outer = line("voice_message.not_allowed", how=how)
    assert outer.to("ja") == text("voice_message.not_allowed", "ja", how=how.to("ja"))
    assert text("voice_message.leave_out", "ja") in outer.to("ja")
