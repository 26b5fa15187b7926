"""Clean-up and chunking of 20,000 hostile characters: the work runs on the event loop before
any check, so it must stay linear in the text's length.

Each input is a shape that once made a regular expression backtrack quadratically (long runs
of backslashes, "<", "@", dots, commas, spaces, unclosed spoilers and code fences) or that
makes the most work for the passes (thousands of spoilers and code blocks). It prints the
worst of several runs per input, clean-up and chunking separately, and the length at which a
doubling of the input more than triples the time (none, for linear work). Then the server's
pronunciations over the same length, beside the clean-up of the same text (`bench.dictionary`).

    python -m bench.text_cleanup [--chars 20000] [--target-ms 50] [--dictionary-target-ms 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from bench import dictionary
from bot.speech.chunking import split_text
from bot.speech.cleanup import CleanupOptions, MessageFacts, clean_message

SHAPES: dict[str, Callable[[int], str]] = {
    "prose": lambda n: ("The quick brown fox jumps over the lazy dog. " * n)[:n],
    "one long word": lambda n: "x" * n,
    "backslashes": lambda n: "\\" * n,
    "less-than signs": lambda n: "<" * n,
    "at signs": lambda n: "@" * n,
    "newlines": lambda n: "\n" * n,
    "spaces": lambda n: "a" + " " * (n - 2) + "b",
    "dots": lambda n: "." * n,
    "commas": lambda n: "," * n,
    "dashes": lambda n: " -" * (n // 2),
    "unclosed spoiler": lambda n: "||" + "secret " * (n // 7),
    "unclosed code": lambda n: "```" + "code " * (n // 5),
    "pipes": lambda n: "|" * n,
    "backticks": lambda n: "`" * n,
    "masked links": lambda n: "[a](" * (n // 4),
    "urls": lambda n: "https://a.b/c, " * (n // 15),
    "mentions": lambda n: "<@1> " * (n // 5),
    "repeats": lambda n: ("ha" * 40 + "!" * 30 + " ") * (n // 111),
}


def worst_ms(work: Callable[[], object], runs: int) -> float:
    worst = 0.0
    for _ in range(runs):
        started = time.perf_counter()
        work()
        worst = max(worst, time.perf_counter() - started)
    return worst * 1000


def measure(text: str, runs: int) -> tuple[float, float]:
    # The operator's limit of 20,000 characters, so nothing is cut before it is cleaned.
    options = CleanupOptions(max_length=max(len(text), 1))
    clean = worst_ms(lambda: clean_message(MessageFacts(text), options), runs)
    split = worst_ms(lambda: split_text(text, 500, first_max=200), runs)
    return clean, split


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chars", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target-ms", type=float, default=50.0)
    parser.add_argument("--dictionary-target-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    worst_total = 0.0
    superlinear: list[str] = []
    print(f"{'input':18} {'clean ms':>9} {'split ms':>9} {'total':>8}  (x2 input: time ratio)")
    for name, make in SHAPES.items():
        clean, split = measure(make(args.chars), args.runs)
        double = sum(measure(make(2 * args.chars), 1))
        ratio = double / max(clean + split, 1e-6)
        if ratio > 3.0 and clean + split > 5.0:
            superlinear.append(name)
        worst_total = max(worst_total, clean + split)
        print(f"{name:18} {clean:9.1f} {split:9.1f} {clean + split:8.1f}  ({ratio:.1f})")
    print(f"worst total for {args.chars:,} characters: {worst_total:.1f} ms")
    print(f"target: < {args.target_ms:g} ms; growing faster than linear: {superlinear or 'none'}")
    met = worst_total < args.target_ms and not superlinear
    print()
    met = dictionary.report(args.chars, max(args.runs, 5), args.dictionary_target_ms) and met
    print(f"target met: {'yes' if met else 'no'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
