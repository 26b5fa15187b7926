"""A server's pronunciations: whole words, any case, one pass, bounded."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import InvalidRequestError
from bot.speech import pronunciations
from bot.speech.pronunciations import (
    MAX_ENTRIES,
    Pronunciations,
    check_entry,
    normalize_word,
)


def test_whole_words_in_any_case_are_replaced() -> None:
    words = Pronunciations.of({"Nguyen": "Win", "k8s": "kubernetes", "GIF": "jif"})
    assert words.apply("nguyen sent a gif about K8S.") == "Win sent a jif about kubernetes."
    assert words.apply("Nguyenville and gifs stay") == "Nguyenville and gifs stay"


def test_longest_entry_wins_and_replacements_are_not_replaced_again() -> None:
    words = Pronunciations.of({"New York": "the big apple", "York": "Yoark", "apple": "X"})
    assert words.apply("New  York and York") == "the big apple and Yoark"


def test_punctuation_edged_entries_match_as_whole_words() -> None:
    words = Pronunciations.of({"C++": "C plus plus", ".NET": "dot net"})
    assert (
        words.apply("I like C++ and .net, not C+++") == "I like C plus plus and dot net, not C+++"
    )


def test_an_empty_dictionary_returns_the_text_itself() -> None:
    text = "unchanged"
    assert Pronunciations({}).apply(text) is text


def test_entries_are_checked() -> None:
    assert check_entry("  Nguyen  ", " Win ") == ("Nguyen", "Win")
    with pytest.raises(InvalidRequestError, match="both"):
        check_entry("word", " ")
    with pytest.raises(InvalidRequestError, match="limit is 100"):
        check_entry("x" * 101, "y")
    with pytest.raises(InvalidRequestError, match="letter or digit"):
        check_entry("!!", "bang")
    with pytest.raises(ValueError, match="at most 200"):
        Pronunciations({f"w{n}": "x" for n in range(MAX_ENTRIES + 1)})
    assert normalize_word("  New   YORK ") == "new york"


@given(
    st.dictionaries(
        st.text(alphabet="abcXYZ+. ", min_size=1, max_size=6).filter(lambda w: w.strip(" +.")),
        st.text(alphabet="def", min_size=1, max_size=4),
        max_size=8,
    ),
    st.text(alphabet="abcXYZ+. \n", max_size=60),
)
def test_text_without_any_entry_is_untouched(entries: dict[str, str], text: str) -> None:
    words = Pronunciations.of(entries)
    out = words.apply(text)
    if not any(normalize_word(w) in normalize_word(text) for w in entries):
        assert out == text


def test_names_in_quotes_brackets_and_possessives_read_right() -> None:
    words = Pronunciations.of({"Nguyen": "Win", "gif": "jif", "New York": "Noo Yawk"})
    assert words.apply("Nguyen's (gif) and 'new\n york'.") == "Win's (jif) and 'Noo Yawk'."
    assert words.apply("a-gif/GIF_gif~ not gif+ or xgif") == "a-jif/jif_jif~ not gif+ or xgif"


def test_turkish_dotted_and_dotless_i_are_other_letters_and_never_raise() -> None:
    # Full case folding keeps them apart from "i": "İ" is "i" plus a combining dot, "ı" itself.
    words = Pronunciations.of({"gif": "jif"})
    assert words.apply("GİF gıf GIF") == "GİF gıf jif"
    spelt_turkish = Pronunciations.of({"GİF": "cif"})
    assert spelt_turkish.apply("GİF gi\u0307f gif gıf") == "cif cif gif gıf"


def test_letters_whose_folding_changes_length_read_in_every_spelling() -> None:
    # "\u212a" is the Kelvin sign, which folds to "k".
    words = Pronunciations.of({"Straße": "Strasse", "fix": "phix", "ΟΔΟΣ": "odos", "k8s": "k"})
    assert words.apply("STRASSE straße ﬁx FIX οδος Οδοσ \u212a8s K8S") == (
        "Strasse Strasse phix phix odos odos k k"
    )
    # A match never ends inside a letter that folds to two: "s" is not half of "ß".
    assert Pronunciations.of({"s": "x", "fi": "y"}).apply("ß sß ﬁ ﬁx") == "ß sß y ﬁx"


def test_a_dictionary_is_compiled_once_for_all_its_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compiled: list[object] = []
    compile_ = pronunciations._compile

    def counted(entries: tuple[tuple[str, str], ...]) -> object:
        compiled.append(entries)
        return compile_(entries)

    monkeypatch.setattr(pronunciations, "_compile", counted)
    monkeypatch.setattr(pronunciations, "_COMPILED", OrderedDict())
    pairs = {"once-compiled": "x", "another entry": "y"}
    for text in ("once-compiled", "another  entry", "neither"):
        Pronunciations.of(dict(pairs)).apply(text)
    assert len(compiled) == 1
    Pronunciations.of({**pairs, "once-compiled": "z"}).apply("once-compiled")
    assert len(compiled) == 2


def test_compiled_dictionaries_are_kept_within_a_number_of_states(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pronunciations, "_COMPILED", OrderedDict())
    monkeypatch.setattr(pronunciations, "_COMPILED_STATES", 100)
    for n in range(20):
        Pronunciations.of({f"word{n} {'x ' * 20}": "y"}).apply("text")
    kept = pronunciations._COMPILED.values()
    assert 1 < len(kept) < 20
    assert sum(len(automaton.fail) for automaton in kept) <= 100


# Letters whose case mappings are odd: they change length (ß ẞ İ ﬁ ŉ ΐ ǰ), fold into ASCII
# (ſ, the Kelvin sign), have no ASCII partner (ı), or depend on their place (final sigma).
_ODD = "aAiIİıgGfFsSßẞſkKKﬁŉΐǰΣσς"
_ALPHABET = _ODD + " \n\t-.'(+)"
# The boundary rules as the regular expression before this module had them.
_BEFORE = r"(?<![^\s\"'(\[{<*_~/-])"
_AFTER = r"(?![^\s\"')\]}>.,;:!?*_~/-])"


def _read_char_by_char(entries: Mapping[str, str], text: str) -> str:
    """The same rules, slow and obvious: one regular expression over the folded text, each
    match mapped back to the letters it came from."""
    if not entries:
        return text
    folded, origin = "", []
    for index, char in enumerate(text):
        folded += char.casefold()
        origin += [index] * len(char.casefold())
    origin.append(len(text))
    alternatives = "|".join(
        r"\s+".join(map(re.escape, word.split())) for word in sorted(entries, key=len, reverse=True)
    )
    out, done = [], 0
    for match in re.finditer(rf"{_BEFORE}(?:{alternatives}){_AFTER}", folded):
        start, end = origin[match.start()], origin[match.end()]
        assert match.start() == 0 or origin[match.start() - 1] != start, "split a letter"
        assert origin[match.end() - 1] != end, "split a letter"
        out += [text[done:start], entries[" ".join(match[0].split())]]
        done = end
    return "".join([*out, text[done:]])


@st.composite
def _texts_and_entries(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    text = draw(st.text(alphabet=_ALPHABET, max_size=40))
    # Entries cut from the text itself (so they are found) and made up (so they mostly aren't).
    cut = st.tuples(st.integers(0, len(text)), st.integers(1, 12)).map(
        lambda span: text[span[0] : span[0] + span[1]]
    )
    made_up = st.text(alphabet=_ALPHABET, min_size=1, max_size=8)
    words = draw(st.lists(st.one_of(cut, made_up).filter(str.strip), max_size=8))
    says = st.text(alphabet="XYZ", min_size=1, max_size=3)
    return text, {word: draw(says) for word in words}


@settings(max_examples=400)
@given(_texts_and_entries())
def test_any_text_and_any_dictionary_read_as_the_rules_say(
    case: tuple[str, dict[str, str]],
) -> None:
    text, entries = case
    words = Pronunciations.of(entries)
    out = words.apply(text)
    assert out == _read_char_by_char(words.entries, text)
    if not any(word in normalize_word(text) for word in words.entries):
        assert out == text
