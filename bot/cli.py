"""`python -m bot …`: run the bot, or try the API from a terminal before Discord is involved.

Every failure ends in one readable line on stderr and a non-zero exit code, never a traceback:
that includes standard output itself failing (`voices | head -1` closing the pipe, a full
disk), which ends quietly with 141 (128 + SIGPIPE, what a shell shows for a closed pipe) or
one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bot import __version__
from bot import audio as audio_mod
from bot.audio import AudioFormat
from bot.config import Settings, load_settings, require
from bot.errors import (
    BotError,
    DatabaseURLError,
    SegmindConnectionError,
    SegmindError,
    SettingsError,
    StorageError,
)
from bot.logs import configure_logging
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest, build_request
from bot.speech.voices import VOICES
from bot.synthesis.client import SegmindClient

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "TERMINAL_USER",
    "CliError",
    "build_parser",
    "main",
]

log = logging.getLogger("bot")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: 128 + SIGPIPE: how a shell reports a writer whose reader went away (`voices | head -1`).
EXIT_BROKEN_PIPE = 141
#: What `say` writes; the other formats the audio package knows (raw PCM) have no header.
SAY_FORMATS = {".ogg": "Ogg Opus", ".opus": "Ogg Opus", ".wav": "WAV", ".mp3": "MP3"}
#: Who the terminal's requests are for, in the scheduler's fairness and the usage records.
TERMINAL_USER = 0


class CliError(Exception):
    """A failure already phrased for the terminal."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m bot",
        description="A Discord bot that speaks with Gemini 2.5 Flash TTS on Segmind.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--env-file", default=".env", help="settings file to read (default: .env, if present)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text, formatter_class=_Formatter)

    command("run", "start the Discord bot (the default)")

    say = command("say", "speak TEXT into an audio file, through the bot's own scheduler")
    say.add_argument("text", metavar="TEXT", help="what to say, or - to read standard input")
    formats = ", ".join(SAY_FORMATS)
    say.add_argument("-o", "--output", required=True, type=Path, help=f"file to write: {formats}")
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


class _StdoutFailed(Exception):
    """Writing standard output failed (a full disk): not a failure of the command itself."""


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit cannot fail again
    and print "Exception ignored…" (the recipe in Python's `signal` documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _out(text: str = "", end: str = "\n") -> None:
    """Print to stdout at once, so a closed or full stdout fails here, inside `main`."""
    try:
        print(text, end=end, flush=True)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _StdoutFailed(exc.strerror or str(exc)) from None


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    if command == "voices":
        return _voices()
    try:
        settings = load_settings(args.env_file)
        configure_logging(settings)
        if command == "health":
            return _health(settings)
        if command == "say":
            return asyncio.run(_say(settings, args))
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
        print(f"error: {_one_line(exc)}", file=sys.stderr)
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


async def _say(settings: Settings, args: argparse.Namespace) -> int:
    # Everything that can be checked for free is checked before the call that costs money.
    suffix = args.output.suffix.lower()
    if suffix not in SAY_FORMATS:
        raise CliError(
            f"cannot write {args.output.name!r}: name the file {', '.join(SAY_FORMATS)}",
            EXIT_USAGE,
        )
    target = AudioFormat.from_extension(suffix)
    output: Path = args.output.resolve()
    if not output.parent.is_dir():
        raise CliError(f"the folder {output.parent} does not exist", EXIT_USAGE)
    text = sys.stdin.read() if args.text == "-" else args.text
    length = len(text.strip())
    if length > settings.max_text_length:
        raise CliError(
            f"that text is {length:,} characters; the limit is {settings.max_text_length:,} "
            "(MAX_TEXT_LENGTH): shorten it, or raise MAX_TEXT_LENGTH (at most 20,000)",
            EXIT_USAGE,
        )
    request = build_request(
        text,
        voice=args.voice,
        voice_2=args.voice_2,
        temperature=args.temperature,
        style=args.style,
        max_length=settings.max_text_length,
        default_voice=settings.default_voice,
        default_temperature=settings.default_temperature,
    )
    require(settings, "segmind_api_key")
    from bot.services import USER_AGENT  # the services (Redis, storage) only when calling

    async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
        client = SegmindClient.from_settings(session, settings)
        with _naming_the_host(settings):
            received = await _through_the_scheduler(settings, client, request)
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(None, _transcode, received, target)
    try:
        await loop.run_in_executor(None, output.write_bytes, data)
    except OSError as exc:
        raise CliError(f"could not write {output}: {exc.strerror or exc}") from None
    _out(_summary(request, output, target, received.duration, len(data)))
    if client.remaining_credits is not None:
        _out(f"Remaining credits: {client.remaining_credits:g}")
        _warn_if_empty(client.remaining_credits)
    return EXIT_OK


@contextlib.contextmanager
def _naming_the_host(settings: Settings) -> Iterator[None]:
    """A DNS failure says only "ClientConnectorDNSError": say which host, and which setting."""
    try:
        yield
    except SegmindConnectionError as exc:
        host = urlsplit(settings.segmind_base_url).hostname or settings.segmind_base_url
        raise CliError(
            f"could not reach {host} (SEGMIND_BASE_URL={settings.segmind_base_url}): "
            f"{_one_line(exc)}"
        ) from None


def _warn_if_empty(credits: float) -> None:
    if credits <= 0:
        print(
            "warning: no credits left: every speech call will fail until you add credits "
            "at https://cloud.segmind.com",
            file=sys.stderr,
        )


async def _through_the_scheduler(
    settings: Settings, client: SegmindClient, request: SpeechRequest
) -> audio_mod.Audio:
    """One request through the scheduler the bot uses, so the terminal paces, waits out 429s
    and retries exactly as Discord members are served. Its running commentary is for the
    bot's log; here the outcome is the one line the user reads (LOG_LEVEL=DEBUG shows it)."""
    from bot.services import build_scheduler

    quiet = logging.getLogger("bot.synthesis")
    level = quiet.level
    if not log.isEnabledFor(logging.DEBUG):
        quiet.setLevel(logging.CRITICAL)
    scheduler = build_scheduler(settings, client)
    try:
        return await scheduler.submit(request, Requester(TERMINAL_USER, cooldown=0)).result()
    finally:
        await scheduler.close(grace=0)
        quiet.setLevel(level)


def _transcode(received: audio_mod.Audio, target: AudioFormat) -> bytes:
    if received.format is target and target is not AudioFormat.OGG:
        return received.data  # Already the right container; Ogg may be Vorbis, so re-encode.
    return audio_mod.encode(audio_mod.decode_audio(received), target)


def _summary(
    request: SpeechRequest, path: Path, target: AudioFormat, seconds: float, size: int
) -> str:
    voices = request.voice + (f" + {request.voice_2}" if request.voice_2 else "")
    kind = {AudioFormat.OGG: "Ogg Opus", AudioFormat.WAV: "WAV", AudioFormat.MP3: "MP3"}[target]
    return f"Wrote {path}: {voices}, {seconds:.2f} s, {kind}, {size / 1024:.1f} KiB"


async def _credits(settings: Settings) -> int:
    require(settings, "segmind_api_key")
    async with aiohttp.ClientSession() as session:
        client = SegmindClient.from_settings(session, settings)
        with _naming_the_host(settings):
            balance = await client.get_credits()
    _out(f"API key accepted. Credits: {balance.credits:g}, free credits: {balance.free_credits:g}")
    _warn_if_empty(balance.total)
    return EXIT_OK


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


def _exit_code(exc: Exception) -> int:
    if isinstance(exc, SegmindError):
        return EXIT_FAILED
    return EXIT_USAGE


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
