"""`python -m bot …`: run the bot, or try the API from a terminal before Discord is involved.

Every failure ends in one readable line on stderr and a non-zero exit code, never a traceback:
that includes standard output itself failing (`voices | head -1` closing the pipe, a full
disk), which ends quietly with 141 (128 + SIGPIPE, what a shell shows for a closed pipe) or
one line.

The commands with more to them live beside this module (`bot.say`, `bot.check`), and what
every command shares (exit codes, `CliError`, writing stdout) in `bot.terminal`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from bot import __version__
from bot.config import Settings, load_settings, require
from bot.errors import (
    BotError,
    DatabaseURLError,
    SegmindError,
    SettingsError,
    StorageError,
)
from bot.logs import configure_logging
from bot.say import SAY_FORMATS, TERMINAL_USER, naming_the_host, say, warn_if_empty
from bot.speech.voices import VOICES
from bot.synthesis.client import SegmindClient
from bot.terminal import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
)

# Under the names the commands in this module have always used.
from bot.terminal import StdoutFailed as _StdoutFailed
from bot.terminal import one_line as _one_line
from bot.terminal import out as _out
from bot.terminal import silence_stdout as _silence_stdout

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROGRAM",
    "TERMINAL_USER",
    "CliError",
    "build_parser",
    "main",
]

log = logging.getLogger("bot")

#: The project's name in pyproject.toml, and its console script's.
PROGRAM = "gemini-tts-bot"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m bot",
        description="A Discord bot that speaks with Gemini 2.5 Flash TTS on Segmind.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    parser.add_argument(
        "--env-file", default=".env", help="settings file to read (default: .env, if present)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text, formatter_class=_Formatter)

    command("run", "start the Discord bot (the default)")

    say = command(
        "say", "speak TEXT into an audio file (or stdout), through the bot's own scheduler"
    )
    say.add_argument("text", metavar="TEXT", help="what to say, or - to read standard input")
    formats = ", ".join(SAY_FORMATS)
    say.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        help=f"file to write: {formats}; or - for standard output (`-o - > hello.ogg`)",
    )
    say.add_argument(
        "--format",
        choices=sorted({suffix[1:] for suffix in SAY_FORMATS}),
        help="the audio's format (default: from the file's name; ogg for -o -)",
    )
    say.add_argument(
        "--voice",
        help="voice for the first speaker, see `voices` (default: Zephyr, or DEFAULT_VOICE)",
    )
    say.add_argument("--voice-2", dest="voice_2", help="voice for a second speaker (default: none)")
    say.add_argument(
        "--temperature",
        type=float,
        help="0 to 2, 0.4 steady, 0.7 lively (default: 0.4, or DEFAULT_TEMPERATURE)",
    )
    say.add_argument(
        "--style",
        help="how to say it: a preset (cheerful, whispering, narrator…) or free text "
        "(default: none)",
    )

    sync = command("sync", "publish the slash commands to Discord (needs only DISCORD_TOKEN)")
    sync.add_argument(
        "--guild", type=int, metavar="ID", help="one server only, at once (default: everywhere)"
    )

    backup = command("backup", "copy the database to FILE, checked, while the bot runs")
    backup.add_argument("file", metavar="FILE", type=Path, help="where to write it")
    backup.add_argument(
        "--format",
        choices=("sqlite", "json"),
        help="json: JSON Lines, restorable into SQLite or PostgreSQL (default: sqlite for a "
        "SQLite database unless FILE ends in .json or .jsonl; json for PostgreSQL)",
    )
    restore = command("restore", "replace the database with a backup (stop the bot first)")
    restore.add_argument("file", metavar="FILE", type=Path, help="a file `backup` wrote")
    move = command("migrate-storage", "copy the SQLite database into PostgreSQL, checked")
    move.add_argument(
        "url",
        metavar="URL",
        help="postgresql://user:password@host:5432/database, or - to read it from standard "
        "input (keeps the password out of the process list)",
    )
    move.add_argument(
        "--replace",
        "--force",
        action="store_true",
        help="overwrite a database that holds other data, saved to DATA_DIR first "
        "(default: refuse)",
    )

    command("voices", "list the 30 voices")
    command("credits", "check the API key and show the account's credits")
    command(
        "check",
        "check everything the bot needs (settings, storage, Redis, Segmind, Discord, voice), "
        "without starting it; exit 0 only if all is well",
    )
    command(
        "health",
        "exit 0 if the running bot is connected to Discord and speech is not paused "
        "(Docker's HEALTHCHECK)",
    )
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse swallows a failed write of --help (a closed pipe, a full disk) and exits 0;
    here it fails like every other write to stdout."""

    def _print_message(self, message: str, file: object = None) -> None:
        if not message:
            return
        if file is None or file is sys.stderr:
            with contextlib.suppress(OSError):
                sys.stderr.write(message)
            return
        _out(message, end="")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's own layout, but every option's default written into its help by hand:
    the real defaults come from settings (DEFAULT_VOICE…), which argparse cannot know."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; whatever happens, at most one line on stderr (see the module doc)."""
    try:
        return _main(argv)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except _StdoutFailed as exc:
        _silence_stdout()
        print(f"error: could not write to standard output: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    if command == "voices":
        return _voices()
    try:
        if command == "check":
            return _check(args.env_file)
        settings = load_settings(args.env_file)
        configure_logging(settings)
        if command == "health":
            return _health(settings)
        if command == "say":
            return asyncio.run(say(settings, args))
        if command == "credits":
            return asyncio.run(_credits(settings))
        if command == "sync":
            return asyncio.run(_sync(settings, args.guild))
        if command in {"backup", "restore", "migrate-storage"}:
            return _storage(settings, args)
        return _run(settings)
    except (BrokenPipeError, _StdoutFailed):
        raise
    except (CliError, SettingsError, BotError) as exc:
        code = exc.code if isinstance(exc, CliError) else _exit_code(exc)
        print(f"error: {_said(exc)}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # The promise is one line, never a traceback; DEBUG logs it whole.
        log.debug("Unexpected failure", exc_info=True)
        print(f"error: unexpected {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def _voices() -> int:
    width = max(len(voice.name) for voice in VOICES)
    _out("\n".join(f"{voice.name:<{width}}  {voice.character}" for voice in VOICES))
    return EXIT_OK


def _run(settings: Settings) -> int:
    require(settings, "discord_token", "segmind_api_key")
    # discord.py and the bot are imported here, not at the top: `voices`, `say` and `--help`
    # start in a fraction of the time without them.
    import discord

    from bot.app import run_bot

    try:
        asyncio.run(run_bot(settings))
    except discord.LoginFailure:
        raise CliError(
            "Discord rejected DISCORD_TOKEN; copy the token again from the portal"
        ) from None
    except discord.PrivilegedIntentsRequired:
        raise CliError(
            "Discord refused a privileged intent: enable Message Content in the Developer "
            "Portal (Bot -> Privileged Gateway Intents), or set NARRATION_ENABLED=false"
        ) from None
    return EXIT_OK


async def _sync(settings: Settings, guild_id: int | None) -> int:
    import discord

    from bot.app import sync_commands

    try:
        names = await sync_commands(settings, guild_id)
    except discord.LoginFailure:
        raise CliError(
            "Discord rejected DISCORD_TOKEN; copy the token again from the portal"
        ) from None
    where = f"server {guild_id}" if guild_id else "every server (may take up to an hour to show)"
    _out(f"Synced {len(names)} commands to {where}: {', '.join(sorted(names))}")
    return EXIT_OK


async def _credits(settings: Settings) -> int:
    require(settings, "segmind_api_key")
    async with aiohttp.ClientSession() as session:
        client = SegmindClient.from_settings(session, settings)
        with naming_the_host(settings):
            balance = await client.get_credits()
    _out(f"API key accepted. Credits: {balance.credits:g}, free credits: {balance.free_credits:g}")
    warn_if_empty(balance.total)
    return EXIT_OK


def _check(env_file: str) -> int:
    from bot.check import run_checks  # its probes' libraries only for this command

    return asyncio.run(run_checks(env_file))


def _storage(settings: Settings, args: argparse.Namespace) -> int:
    """The operator's copies (bot/storage/backup.py and restore.py); refused or failed: exit 1."""
    from bot.storage import backup, restore

    try:
        if args.command == "backup":
            lines = asyncio.run(backup.backup(settings, args.file, args.format))
        elif args.command == "restore":
            lines = asyncio.run(restore.restore(settings, args.file))
        else:
            url = sys.stdin.readline().strip() if args.url == "-" else args.url
            lines = asyncio.run(restore.migrate_storage(settings, url, replace=args.replace))
    except StorageError as exc:
        usage = isinstance(exc, DatabaseURLError)
        raise CliError(str(exc), EXIT_USAGE if usage else EXIT_FAILED) from None
    _out("\n".join(lines))
    return EXIT_OK


def _health(settings: Settings) -> int:
    from bot.health import check

    healthy, message = check(settings)
    _out(message)
    return EXIT_OK if healthy else EXIT_FAILED


def _said(exc: Exception) -> str:
    """The error's one line. A settings error never quotes a value (`bot.config`), and its
    advice shows the URLs' forms (postgresql://user:password@host/database) whole."""
    return " ".join(str(exc).split()) if isinstance(exc, SettingsError) else _one_line(exc)


def _exit_code(exc: Exception) -> int:
    if isinstance(exc, SegmindError):
        return EXIT_FAILED
    return EXIT_USAGE
