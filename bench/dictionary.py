"""A server's pronunciations over 20,000 characters, beside the plain clean-up of the same text:
both run on the event loop for every message, so neither may grow with anything but the text.

Dictionaries of 0, 20 and 200 maximal entries (100 characters of made-up words each) over
prose they never match and over a text made of nothing but their entries; then adversarial
ones, 200 entries sharing a long prefix with a text that repeats it (words of one letter,
words of four, letters joined by dashes, dashes alone), which made the alternation the module
once compiled try every entry at every word. Only the public API is used (a new
`Pronunciations` per message, as `pronounce` does), so the same figures can be taken of an
older implementation. "first" is the first message after the dictionary changed (compiling
included), "ms" the worst of the runs after it, "x2" the time for twice the text over it.

    python -m bench.dictionary [--chars 20000] [--runs 5] [--target-ms 5]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

from bot.speech.cleanup import CleanupOptions, MessageFacts, clean_message
from bot.speech.pronunciations import MAX_ENTRY_LENGTH, Pronunciations


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    text: Callable[[int], str]
    entries: dict[str, str]
    #: Whether the target applies: a realistic worst (maximal entries), not an adversary.
    targeted: bool = True


def maximal_entries(count: int, seed: int = 7) -> dict[str, str]:
    """`count` entries of exactly MAX_ENTRY_LENGTH characters of made-up words."""
    rng = random.Random(seed)
    entries: dict[str, str] = {}
    while len(entries) < count:
        words: list[str] = []
        while sum(map(len, words)) + len(words) < MAX_ENTRY_LENGTH:
            words.append("".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))))
        word = " ".join(words)[:MAX_ENTRY_LENGTH]
        entries[word if word[-1] != " " else word[:-1] + "q"] = f"entry {len(entries)}"
    return entries


def prose(n: int) -> str:
    return ("The quick brown fox jumps over the lazy dog. " * (n // 45 + 1))[:n]


def repeat(unit: str) -> Callable[[int], str]:
    return lambda n: (unit * (n // len(unit) + 1))[:n]


def shared_prefix(unit: str, tokens: int) -> dict[str, str]:
    """200 entries that all begin with `unit` said `tokens` times: a text repeating `unit`
    matches each of them almost to its end, at every place an entry may start."""
    return {(unit * tokens) + f"x{k:03d}": "said" for k in range(200)}


def cases() -> Iterator[Case]:
    twenty, two_hundred = maximal_entries(20), maximal_entries(200)
    yield Case("prose, no entries", prose, {})
    yield Case("prose, 20 maximal", prose, twenty)
    yield Case("prose, 200 maximal", prose, two_hundred)
    yield Case("all entries, 200", repeat(" ".join(two_hundred) + ". "), two_hundred)
    yield Case("'a a a', 200 x 96", repeat("a "), shared_prefix("a ", 46), targeted=False)
    yield Case("'aaaa ', 200 x 94", repeat("aaaa "), shared_prefix("aaaa ", 18), targeted=False)
    yield Case("'a-a-a', 200 x 96", repeat("a-"), shared_prefix("a-", 46), targeted=False)
    yield Case("dashes, 200 x 96", repeat("-"), shared_prefix("-", 92), targeted=False)


def worst_ms(work: Callable[[], object], runs: int) -> float:
    worst = 0.0
    for _ in range(runs):
        started = time.perf_counter()
        work()
        worst = max(worst, time.perf_counter() - started)
    return worst * 1000


_changes = iter(range(10**9))


def changed(entries: dict[str, str]) -> dict[str, str]:
    """The same dictionary with one entry edited, so whatever was compiled for it is not."""
    if not entries:
        return entries
    *rest, last = entries
    return {**{word: entries[word] for word in rest}, f"{last} {next(_changes)}": "edited"}


def dictionary_ms(entries: dict[str, str], text: str, runs: int) -> tuple[float, float]:
    fresh = changed(entries)
    first = worst_ms(lambda: Pronunciations.of(fresh).apply(text), 1)
    return first, worst_ms(lambda: Pronunciations.of(fresh).apply(text), runs)


def report(chars: int, runs: int, target_ms: float) -> bool:
    """Prints the table; whether every targeted case is under `target_ms` and linear."""
    print(f"{'dictionary input':20} {'clean ms':>9} {'first':>8} {'ms':>8}  (x2)")
    met = True
    options = CleanupOptions(max_length=chars)
    for case in cases():
        text = case.text(chars)
        clean = worst_ms(partial(clean_message, MessageFacts(text), options), runs)
        first, steady = dictionary_ms(case.entries, text, runs)
        double = dictionary_ms(case.entries, case.text(2 * chars), 1)[1]
        ratio = double / max(steady, 1e-6)
        superlinear = ratio > 3.0 and steady > 1.0
        if case.targeted and (steady >= target_ms or superlinear):
            met = False
        mark = "" if case.targeted else "  adversarial"
        print(f"{case.name:20} {clean:9.1f} {first:8.1f} {steady:8.2f}  ({ratio:.1f}){mark}")
    print(f"target: dictionary < {target_ms:g} ms for {chars:,} characters with maximal entries")
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chars", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--target-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    met = report(args.chars, args.runs, args.target_ms)
    print(f"target met: {'yes' if met else 'no'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
