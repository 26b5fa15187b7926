"""A server's own pronunciations: whole words replaced before synthesis, so names are read right.

Gemini guesses at names, nicknames and jargon ("Nguyen", "k8s", "GIF"); a server knows how its
members say them. Replacements are whole-word and case-insensitive, applied in one pass over
the text (a replacement is never replaced again), with the longest entry winning where two
overlap. This runs on the event loop for every message, so its cost is linear in the text and
does not grow with the number of entries (at most 200 entries of 100 characters).

"Any case" means Unicode full case folding (`str.casefold`, locale-free), applied the same way
to the entries and to the text, and the text's words are looked up in the same automaton that
found them, so finding and replacing cannot disagree. Under that folding "ß" is "ss", "ſ" is
"s", the Kelvin sign is "k" and "ﬁ" is "fi", so "STRASSE" reads as the entry "Straße" and
"ﬁx" as "fix". The Turkish letters stay themselves: "İ" folds to "i" plus a combining dot and
"ı" to itself, so the entry "gif" leaves "GİF" and "gıf" untouched (in Turkish they are other
words; reading them as "i" would need a locale no message carries), while an entry spelt
"GİF" reads "GİF". Text is not otherwise normalized: a letter typed as a base letter plus a
combining accent is another spelling than the same letter typed precomposed.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.errors import InvalidRequestError
from bot.locales import line

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
        raise InvalidRequestError(line("dictionary.both"))
    for name, value in (("word", word), ("say_as", say_as)):
        if len(value) > MAX_ENTRY_LENGTH:
            key = "dictionary.word_too_long" if name == "word" else "dictionary.say_as_too_long"
            raise InvalidRequestError(line(key, length=len(value), limit=MAX_ENTRY_LENGTH))
    if not re.search(r"\w", word):
        raise InvalidRequestError(line("dictionary.needs_letter"))
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
        return _automaton(tuple(self.entries.items())).apply(text)


# What may stand right before and right after an entry, besides a space or the text's edge:
# punctuation that separates words. So "C++" is not found in "C+++" and "gif" not in "gifs", while
# "Nguyen's" and "(gif)" still read right.
_BEFORE = "\"'([{<*_~/-"
_AFTER = "\"')]}>.,;:!?*_~/-"
_SEPARATORS = re.escape("".join(sorted(set(_BEFORE + _AFTER))))
# Every place an entry may begin or end falls between two tokens: a separator is a token of
# its own, a run of spaces is one token and everything else runs together ("c++", "k8s").
_TOKEN = re.compile(rf"[^\s{_SEPARATORS}]+|\s+|[{_SEPARATORS}]")
# The symbols (folded tokens, any run of spaces being " ") after which an entry may begin,
# and before which one may end.
_STARTS = frozenset(" " + _BEFORE)
_ENDS = frozenset(" " + _AFTER)


def _symbols(tokens: Sequence[str]) -> list[str]:
    """What the automaton reads for each token: the entries' and the text's words go through
    this one function, so a word is found exactly when its folded form is an entry."""
    return [" " if token.isspace() else token.casefold() for token in tokens]


# The automaton's two roots: at a place where an entry may end (the text's end, or before a
# space or `_AFTER` punctuation), and at one where none may. The trie's states follow them.
_CAN, _CANNOT = 0, 1


@dataclass(frozen=True, slots=True)
class _Automaton:
    """Aho-Corasick over tokens, read from the text's end backwards.

    Reading backwards, the state at a token tells the longest entry *starting* there in O(1)
    (the longest pattern ending at the read position), so the leftmost-longest choice needs
    no backtracking and no walk over the matches; and the rule for where an entry may end is
    part of the automaton (a pattern may only begin at `_CAN`), so every entry it reports
    ends properly. Each token costs one step plus failure steps, which never outnumber the
    steps that went deeper: linear in the text whatever the entries.
    """

    goto: list[dict[str, int]]
    fail: list[int]
    #: The number of tokens of the longest entry reported at a state (0: none), and its say-as.
    longest: list[int]
    says: list[str]

    def apply(self, text: str) -> str:
        tokens = _TOKEN.findall(text)
        symbols = _symbols(tokens)
        goto, fail, longest = self.goto, self.fail, self.longest
        state = _CAN
        starts: list[tuple[int, int]] = []  # (first token, state), right to left
        for index, symbol in zip(range(len(symbols) - 1, -1, -1), reversed(symbols), strict=True):
            following = goto[state].get(symbol)
            while following is None:
                if state <= _CANNOT:
                    following = _CANNOT
                    break
                state = fail[state]
                following = goto[state].get(symbol)
            state = following
            if longest[state] and (index == 0 or symbols[index - 1] in _STARTS):
                starts.append((index, state))
        if not starts:
            return text
        pieces: list[str] = []
        done = 0
        for first, state in reversed(starts):
            if first < done:
                continue  # inside the entry just replaced: a replacement is final
            pieces.append("".join(tokens[done:first]))
            pieces.append(self.says[state])
            done = first + longest[state]
        pieces.append("".join(tokens[done:]))
        return "".join(pieces)


# Compiled dictionaries, keyed on their entries (callers build a new Pronunciations for each
# message, so this is what makes it one compilation per dictionary and per change of it), the
# least recently used dropped beyond a number of states: about 300 bytes each, so at most some
# 30 MB, which holds five adversarial maximal dictionaries or thousands of everyday ones.
_COMPILED: OrderedDict[tuple[tuple[str, str], ...], _Automaton] = OrderedDict()
_COMPILED_STATES = 100_000


def _automaton(entries: tuple[tuple[str, str], ...]) -> _Automaton:
    automaton = _COMPILED.get(entries)
    if automaton is not None:
        _COMPILED.move_to_end(entries)
        return automaton
    automaton = _COMPILED[entries] = _compile(entries)
    states = sum(len(compiled.fail) for compiled in _COMPILED.values())
    while states > _COMPILED_STATES and len(_COMPILED) > 1:
        states -= len(_COMPILED.popitem(last=False)[1].fail)
    return automaton


def _compile(entries: tuple[tuple[str, str], ...]) -> _Automaton:
    """The automaton for a dictionary: its entries' symbols, reversed, in a trie, with the
    failure links of Aho-Corasick restricted to places where an entry may end.

    A state stands for the tokens read so far (the end of some entries, backwards); its
    failure link is the longest proper suffix of that, in reading order, that is also a
    state and that an entry may end before: the token read just before it is a space or
    `_AFTER` punctuation. The empty one is `_CAN` or `_CANNOT` by that same token, which is
    why a pattern never begins after a token an entry may not end before.
    """
    goto: list[dict[str, int]] = [{}, {}]
    depth = [0, 0]
    says: list[str] = ["", ""]
    is_entry = [False, False]
    for word, say_as in entries:
        state = _CAN
        for symbol in reversed(_symbols(_TOKEN.findall(" ".join(word.split())))):
            following = goto[state].get(symbol)
            if following is None:
                following = len(goto)
                goto[state][symbol] = following
                goto.append({})
                depth.append(depth[state] + 1)
                says.append("")
                is_entry.append(False)
            state = following
        if state != _CAN:
            is_entry[state], says[state] = True, say_as
    fail = [_CAN] * len(goto)
    longest = [0] * len(goto)
    queue = deque([_CAN])
    while queue:
        parent = queue.popleft()
        for symbol, child in goto[parent].items():
            fail[child] = _fallback(goto, fail, parent, symbol)
            if is_entry[child]:
                longest[child] = depth[child]
            else:
                longest[child], says[child] = longest[fail[child]], says[fail[child]]
            queue.append(child)
    # From either root, a space or `_AFTER` punctuation is a place where an entry may end.
    for symbol in _ENDS:
        goto[_CANNOT][symbol] = _CAN
        goto[_CAN].setdefault(symbol, _CAN)
    return _Automaton(goto=goto, fail=fail, longest=longest, says=says)


def _fallback(goto: list[dict[str, int]], fail: list[int], parent: int, symbol: str) -> int:
    """The failure link of `parent`'s child on `symbol` (parents' links already known)."""
    if parent == _CAN:
        return _CAN if symbol in _ENDS else _CANNOT
    state = fail[parent]
    while True:
        following = goto[state].get(symbol)
        if following is not None:
            return following
        if state <= _CANNOT:
            return _CAN if symbol in _ENDS else _CANNOT
        state = fail[state]
