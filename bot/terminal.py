"""What every terminal command shares: exit codes, the error already phrased for the terminal,
and writing standard output so that a closed or full one fails inside `bot.cli.main`.

Apart from `bot.cli` so the commands in their own modules (`bot.say`, `bot.check`) use the
same few primitives without importing the command line that dispatches to them.
"""

from __future__ import annotations

import os
import sys

from bot.redaction import urls_without_secrets

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "StdoutFailed",
    "one_line",
    "out",
    "out_bytes",
    "silence_stdout",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: 128 + SIGPIPE: how a shell reports a writer whose reader went away (`voices | head -1`).
EXIT_BROKEN_PIPE = 141


class CliError(Exception):
    """A failure already phrased for the terminal."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class StdoutFailed(Exception):
    """Writing standard output failed (a full disk): not a failure of the command itself."""


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit cannot fail again
    and print "Exception ignored…" (the recipe in Python's `signal` documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def out(text: str = "", end: str = "\n") -> None:
    """Print to stdout at once, so a closed or full stdout fails here, inside `main`."""
    try:
        print(text, end=end, flush=True)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise StdoutFailed(exc.strerror or str(exc)) from None


def out_bytes(data: bytes) -> None:
    """Binary to stdout (`say -o -`), failing as `out` does."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise StdoutFailed(exc.strerror or str(exc)) from None


def one_line(exc: BaseException) -> str:
    """The error on one line, any URL in it without userinfo or query (a pasted key)."""
    return urls_without_secrets(" ".join(str(exc).split()))
