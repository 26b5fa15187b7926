"""A server's pronunciations: whole words, any case, one pass, bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import InvalidRequestError
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
