from __future__ import annotations

import pytest

from bot.speech.voices import (
    MENU_LIMIT,
    VOICES,
    UnknownVoiceError,
    find_voice,
    get_voice,
    search,
    voice_menus,
)


def test_catalogue_has_the_thirty_documented_voices() -> None:
    assert len(VOICES) == 30
    assert len({voice.name for voice in VOICES}) == 30
    assert get_voice("Kore").character == "Firm"
    assert get_voice("Sulafat").character == "Warm"
    assert get_voice("Zubenelgenubi").label == "Zubenelgenubi — Casual"


@pytest.mark.parametrize("name", ["kore", "KORE", "  Kore ", "Kore — Firm"])
def test_lookup_ignores_case_spaces_and_labels(name: str) -> None:
    assert get_voice(name).name == "Kore"


def test_unknown_voice_suggests_close_names() -> None:
    with pytest.raises(UnknownVoiceError) as info:
        get_voice("Korr")
    assert "Kore" in info.value.suggestions
    assert "Did you mean" in str(info.value)
    assert find_voice("nobody") is None


def test_search_ranks_prefix_then_character_then_fuzzy() -> None:
    assert [v.name for v in search("ach")][:2] == ["Achernar", "Achird"]
    # By character: "warm" finds Sulafat, "firm" finds the three firm voices in catalogue order.
    assert [v.name for v in search("warm")] == ["Sulafat"]
    assert [v.name for v in search("firm")] == ["Kore", "Orus", "Alnilam"]
    # A typo still finds the voice.
    assert search("zephir")[0].name == "Zephyr"
    assert search("qqqqqq") == []


def test_search_empty_query_lists_first_page_and_respects_limit() -> None:
    assert search("", limit=25) == list(VOICES[:25])
    assert len(search("a", limit=5)) == 5


def test_a_member_keeps_the_same_voice_across_processes() -> None:
    import subprocess
    import sys

    from bot.speech.voices import voice_for_user

    ids = [1, 42, 123456789012345678, 987654321098765432]
    here = [voice_for_user(i).name for i in ids]
    code = (
        f"from bot.speech.voices import voice_for_user as v; print(*[v(i).name for i in {ids!r}])"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert here == there


def test_voices_are_spread_across_members() -> None:
    from collections import Counter

    from bot.speech.voices import voice_for_user

    counts = Counter(voice_for_user(user_id).name for user_id in range(3000))
    assert len(counts) == 30
    assert max(counts.values()) < 2 * min(counts.values())


def test_voice_menus_hold_every_voice_once_by_character_within_discords_limit() -> None:
    menus = voice_menus()
    assert len(menus) == 2
    assert all(len(menu) <= MENU_LIMIT for menu in menus)
    assert sorted(v.name for menu in menus for v in menu) == sorted(v.name for v in VOICES)
    characters = [v.character for menu in menus for v in menu]
    assert characters == sorted(characters, key=str.casefold)
    # A character is never split between two menus.
    assert not {v.character for v in menus[0]} & {v.character for v in menus[1]}
    assert all(len(menu) <= 10 for menu in voice_menus(10))
