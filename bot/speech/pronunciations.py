"""A server's own pronunciations: whole words replaced before synthesis, so names are read right.

Gemini guesses at names, nicknames and jargon ("Nguyen", "k8s", "GIF"); a server knows how its
members say them. Replacements are whole-word and case-insensitive, applied in one pass over
the text (a replacement is never replaced again), with the longest entry winning where two
overlap. Bounds keep the work linear in the text: at most 200 entries of 100 characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.errors import InvalidRequestError

__all__ = [
    "MAX_ENTRIES",
    "MAX_ENTRY_LENGTH",
    "Pronunciations",
    "check_entry",
    "normalize_word",
]

MAX_ENTRIES = 200
MAX_ENTRY_LENGTH = 100


def normalize_word(word: str) -> str:
    """How an entry is keyed: trimmed, inner spaces collapsed, case folded."""
    return " ".join(word.split()).casefold()


def check_entry(word: str, say_as: str) -> tuple[str, str]:
    """A valid (word, say_as) pair, trimmed, or InvalidRequestError saying what is wrong."""
    word, say_as = " ".join(word.split()), " ".join(say_as.split())
    if not word or not say_as:
        raise InvalidRequestError("Give both the word and how to say it.")
    for name, value in (("word", word), ("say_as", say_as)):
        if len(value) > MAX_ENTRY_LENGTH:
            raise InvalidRequestError(
                f"The {name} is {len(value)} characters; the limit is {MAX_ENTRY_LENGTH}."
            )
    if not re.search(r"\w", word):
        raise InvalidRequestError("The word needs at least one letter or digit.")
    return word, say_as


@dataclass(frozen=True, slots=True)
class Pronunciations:
    """A server's dictionary, compiled once per change; empty means no work at all."""

    entries: Mapping[str, str]

    def __post_init__(self) -> None:
        if len(self.entries) > MAX_ENTRIES:
            raise ValueError(f"at most {MAX_ENTRIES} pronunciations, got {len(self.entries)}")

    @classmethod
    def of(cls, pairs: Mapping[str, str]) -> Pronunciations:
        return cls({normalize_word(word): say_as for word, say_as in pairs.items()})

    def apply(self, text: str) -> str:
        """`text` with every listed word, as a whole word in any case, said as the server
        wants; a multi-word entry matches across any run of spaces."""
        if not self.entries:
            return text
        return _pattern(tuple(sorted(self.entries, key=len, reverse=True))).sub(
            lambda match: self.entries[normalize_word(match[0])], text
        )


_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}
# What may stand right before and right after an entry: nothing, a space, or punctuation that
# separates words (a character class, so each check is one character: linear).
_BEFORE = r"(?<![^\s\"'(\[{<*_~/-])"
_AFTER = r"(?![^\s\"')\]}>.,;:!?*_~/-])"


def _pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """One alternation, longest first, standing alone: at the text's edges or between
    spaces and punctuation that separates words, so "C++" is not found in "C+++" and
    "gif" not in "gifs", while "Nguyen's" and "(gif)" still read right.
    """
    pattern = _PATTERNS.get(words)
    if pattern is None:
        alternatives = "|".join(r"\s+".join(map(re.escape, word.split())) for word in words)
        pattern = re.compile(rf"{_BEFORE}(?:{alternatives}){_AFTER}", re.IGNORECASE)
        if len(_PATTERNS) > 256:
            _PATTERNS.clear()
        _PATTERNS[words] = pattern
    return pattern
