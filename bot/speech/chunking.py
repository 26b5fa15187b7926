"""Long text split so that the first audio plays while the rest is still being synthesised.

Synthesis time grows with the length of the text and every call costs the same, so the first
chunk is kept short for a quick start and the others are packed as full as the limit allows,
breaking where a reader would pause: sentences, then clauses, then words.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["DEFAULT_FIRST_MAX", "split_text"]

DEFAULT_FIRST_MAX = 200

# Only where a piece ends matters (it is cut after each match), so every alternative starts
# at the first character of its run (the lookbehinds) or at a fixed character: a long run of
# dots, commas or spaces that is no boundary after all is then scanned once, not once for
# each of its characters. That keeps splitting linear in the length of the text.
_SENTENCE_END = re.compile(r"(?<![.!?…])[.!?…]+[\"'”’»)\]]*\s+|[。！？]+[」』”’）)]*\s*|\n\s*")
_CLAUSE_END = re.compile(r"(?<![,;:])[,;:]+[\"'”’»)\]]*\s+|[—–]\s*|(?<=\s)-+\s+|[，、；：]\s*")
_SPACE = re.compile(r"\s+")
_BOUNDARIES = (_SENTENCE_END, _CLAUSE_END, _SPACE)

_ZWJ = "\u200d"
_MARKS = frozenset({"Mn", "Mc", "Me"})


def split_text(text: str, max_chars: int, *, first_max: int | None = None) -> list[str]:
    """Chunks of at most `max_chars`, the first at most `first_max` (default: up to 200).

    `first_max` is clamped to `max_chars`. Chunks are stripped, non-empty and, with whitespace
    ignored, add up to exactly the input.
    """
    first = min(max_chars, DEFAULT_FIRST_MAX if first_max is None else first_max)
    if first < 1:
        raise ValueError("max_chars and first_max must be at least 1")
    packer = _Packer(first, max_chars)
    packer.add(text, 0)
    return packer.finish()


class _Packer:
    """Greedy packing: each piece joins the current chunk if it fits (fewer calls, less money)."""

    def __init__(self, first: int, rest: int) -> None:
        self._first = first
        self._rest = rest
        self._chunks: list[str] = []
        self._current = ""

    @property
    def _limit(self) -> int:
        return self._rest if self._chunks else self._first

    def add(self, piece: str, level: int) -> None:
        """Add a piece, splitting it at the next finer boundary when it cannot fit on its own."""
        if _fits(self._current + piece, self._limit):
            self._current += piece
            return
        self._flush()
        if _fits(piece, self._limit):
            self._current = piece
        elif level < len(_BOUNDARIES):
            for part in _pieces(piece, _BOUNDARIES[level]):
                self.add(part, level + 1)
        else:
            self._hard_cut(piece)

    def finish(self) -> list[str]:
        self._flush()
        return self._chunks

    def _flush(self) -> None:
        chunk = self._current.strip()
        if chunk:
            self._chunks.append(chunk)
        self._current = ""

    def _hard_cut(self, piece: str) -> None:
        """The last resort for a word longer than a chunk: cut it, but not inside a character."""
        word = piece.strip()
        while len(word) > self._limit:
            cut = _safe_cut(word, self._limit)
            self._current = word[:cut]
            self._flush()
            word = word[cut:]
        self._current = word + piece[len(piece.rstrip()) :]  # Keep the space before the next word.


def _fits(text: str, limit: int) -> bool:
    # Stripping only shortens, so the length alone settles most cases without a copy.
    return len(text) <= limit or len(text.strip()) <= limit


def _pieces(text: str, boundary: re.Pattern[str]) -> list[str]:
    """Cut after each boundary, keeping every character so that nothing is lost."""
    pieces: list[str] = []
    start = 0
    for match in boundary.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


def _safe_cut(text: str, limit: int) -> int:
    """The largest cut at or below `limit` that keeps combining marks, emoji and flags whole."""
    cut = limit
    while cut > 0 and _continues(text, cut):
        cut -= 1
    return cut or limit


def _continues(text: str, index: int) -> bool:
    """Whether text[index] belongs to the same user-perceived character as text[index - 1]."""
    char = text[index]
    return (
        unicodedata.category(char) in _MARKS
        or _ZWJ in (char, text[index - 1])
        or "\U0001f3fb" <= char <= "\U0001f3ff"  # Skin tones.
        or "\U000e0020" <= char <= "\U000e007f"  # Tags, as in subdivision flags.
        or _inside_flag(text, index)
    )


def _inside_flag(text: str, index: int) -> bool:
    """Regional indicators pair up into flags; a cut after an odd number of them splits one."""
    if not _is_regional(text[index]):
        return False
    run = 0
    while index - run > 0 and _is_regional(text[index - run - 1]):
        run += 1
    return run % 2 == 1


def _is_regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"
