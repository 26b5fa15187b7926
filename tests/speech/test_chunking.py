"""The splitter: limits, no lost text, sentences first, greedy packing, a fast first chunk."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.speech.chunking import DEFAULT_FIRST_MAX, split_text

FUZZ = settings(max_examples=200, deadline=None)


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize(
    ("text", "max_chars", "first_max", "chunks"),
    [
        ("", 100, None, []),
        ("   \n\t ", 100, None, []),
        ("  Hello there.  ", 100, None, ["Hello there."]),
        (
            "First one. Second one! Third one? Fourth.",
            25,
            None,
            ["First one. Second one!", "Third one? Fourth."],
        ),
        ("Short. A longer second sentence.", 100, 10, ["Short.", "A longer second sentence."]),
        ("Line one\nLine two\n\nParagraph", 12, None, ["Line one", "Line two", "Paragraph"]),
        ("Wait… what? Really.", 12, None, ["Wait… what?", "Really."]),
        ("你好。世界！再见？", 6, None, ["你好。世界！", "再见？"]),
        ('He said "stop." Then left.', 16, None, ['He said "stop."', "Then left."]),
        (
            "one clause, another clause; a third: and a fourth",
            30,
            None,
            ["one clause, another clause;", "a third: and a fourth"],
        ),
        ("before — after – then", 10, None, ["before —", "after –", "then"]),
        ("One, two three. Four five, six.", 20, None, ["One, two three.", "Four five, six."]),
        ("一二三，四五六、七八九", 4, None, ["一二三，", "四五六、", "七八九"]),
        ("alpha beta gamma delta", 11, None, ["alpha beta", "gamma delta"]),
        ("abcdefghij klm", 4, None, ["abcd", "efgh", "ij", "klm"]),
        ("3.14 is pi. e.g. this", 100, None, ["3.14 is pi. e.g. this"]),
    ],
)
def test_split_table(text: str, max_chars: int, first_max: int | None, chunks: list[str]) -> None:
    assert split_text(text, max_chars, first_max=first_max) == chunks


def test_first_chunk_defaults_to_at_most_200_characters() -> None:
    sentence = "This sentence has exactly fifty characters in it. "
    chunks = split_text(sentence * 20, 1000)
    assert len(chunks[0]) <= DEFAULT_FIRST_MAX < len(chunks[1])
    assert all(len(chunk) <= 1000 for chunk in chunks)


def test_first_max_is_clamped_to_max_chars() -> None:
    assert split_text("aaaa bbbb cccc", 9, first_max=500) == ["aaaa bbbb", "cccc"]


def test_hard_cut_keeps_emoji_flags_and_accents_whole() -> None:
    thumbs = "👍🏽"  # Two code points.
    assert split_text(thumbs * 4, 3) == [thumbs] * 4
    assert split_text("🇫🇷🇩🇪🇫🇷", 3) == ["🇫🇷", "🇩🇪", "🇫🇷"]
    assert split_text("e\u0301" * 3, 3) == ["e\u0301", "e\u0301", "e\u0301"]


def test_hard_cut_keeps_the_space_before_the_next_word() -> None:
    assert split_text("x" * 12 + " end", 10) == ["x" * 10, "xx end"]


@pytest.mark.parametrize(("max_chars", "first_max"), [(0, None), (10, 0), (-1, 5)])
def test_limits_must_be_positive(max_chars: int, first_max: int | None) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_text("hello", max_chars, first_max=first_max)


# --- Properties -----------------------------------------------------------------------------

PUNCTUATION = [
    ". ",
    "! ",
    "? ",
    "… ",
    "。",
    "！",
    ", ",
    "; ",
    ": ",
    " — ",
    "，",
    "、",
    "\n",
    "\n\n",
]
texts = st.lists(
    st.one_of(
        st.sampled_from(PUNCTUATION),
        st.text(max_size=30),
        st.text(alphabet="ab ", max_size=60),
        st.sampled_from(["👍🏽", "🇫🇷", "e\u0301", "👨‍👩‍👧"]),
    ),
    max_size=40,
).map("".join)
limits = st.integers(1, 120).flatmap(lambda m: st.tuples(st.just(m), st.integers(1, m + 20)))


@FUZZ
@given(text=texts, limits=limits)
def test_chunks_respect_limits_and_lose_nothing(text: str, limits: tuple[int, int]) -> None:
    max_chars, first_max = limits
    chunks = split_text(text, max_chars, first_max=first_max)
    assert all(chunk and chunk == chunk.strip() for chunk in chunks)
    if chunks:
        assert len(chunks[0]) <= min(first_max, max_chars)
    assert all(len(chunk) <= max_chars for chunk in chunks)
    assert squash("".join(chunks)) == squash(text)


@FUZZ
@given(text=texts, extra=st.integers(0, 50))
def test_text_under_the_limit_stays_one_chunk(text: str, extra: int) -> None:
    limit = len(text.strip()) + extra
    if text.strip():
        assert split_text(text, limit, first_max=limit) == [text.strip()]
    else:
        assert split_text(text, limit + 1) == []


words = st.text(alphabet="abcdefgh", min_size=1, max_size=8)
sentences = st.builds(
    lambda ws, comma, end: comma.join(ws) + end,
    st.lists(words, min_size=1, max_size=8),  # At most 79 characters with its ending.
    st.sampled_from([" ", ", "]),  # Clause boundaries inside must not win over sentence ends.
    st.sampled_from([".", "!", "?", "…"]),
)


@FUZZ
@given(sentences=st.lists(sentences, min_size=1, max_size=25), max_chars=st.integers(80, 300))
def test_sentences_that_fit_are_never_split_and_packing_is_greedy(
    sentences: list[str], max_chars: int
) -> None:
    first_max = 80  # Every generated sentence fits even the first chunk.
    chunks = split_text(" ".join(sentences), max_chars, first_max=first_max)
    regrouped: list[list[str]] = []
    remaining = list(sentences)
    for chunk in chunks:
        group: list[str] = []
        while remaining and len(" ".join(group)) < len(chunk):
            group.append(remaining.pop(0))
        assert " ".join(group) == chunk, "a chunk must be whole sentences"
        regrouped.append(group)
    assert not remaining
    for index, (chunk, following) in enumerate(zip(chunks, regrouped[1:], strict=False)):
        limit = first_max if index == 0 else max_chars
        assert len(chunk) + 1 + len(following[0]) > limit, "the next sentence would have fitted"
