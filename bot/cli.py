"""`python -m bot …`: run the bot, or try the API from a terminal before Discord is involved.

Every failure ends in one readable line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import discord

from bot import __version__
from bot import audio as audio_mod
from bot.app import run_bot, sync_commands
from bot.audio import AudioFormat
from bot.config import Settings, load_settings, require
from bot.errors import BotError, SegmindError, SettingsError
from bot.services import USER_AGENT, build_scheduler
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest, build_request
from bot.speech.voices import VOICES
from bot.synthesis.client import SegmindClient

__all__ = [
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
#: Who the terminal's requests are for, in the scheduler's fairness and the usage records.
TERMINAL_USER = 0


class CliError(Exception):
    """A failure already phrased for the terminal."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="A Discord bot that speaks with Gemini 2.5 Flash TTS on Segmind.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--env-file", default=".env", help="settings file to read (default: .env, if present)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("run", help="start the Discord bot (the default)")

    say = commands.add_parser("say", help="speak TEXT into an audio file")
    say.add_argument("text", metavar="TEXT", help="what to say")
    say.add_argument("-o", "--output", required=True, type=Path, help="file: .ogg, .wav or .mp3")
    say.add_argument("--voice", help="voice for the first speaker (see `voices`)")
    say.add_argument("--voice-2", dest="voice_2", help="voice for a second speaker (dialogue)")
    say.add_argument("--temperature", type=float, help="0 to 2; 0.4 steady, 0.7 lively")

    sync = commands.add_parser("sync", help="publish the slash commands to Discord")
    sync.add_argument(
        "--guild", type=int, metavar="ID", help="one server only (instant); default: everywhere"
    )

    commands.add_parser("voices", help="list the 30 voices")
    commands.add_parser("credits", help="check the API key and show the account's credits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "run"
    if command == "voices":
        return _voices()
    try:
        settings = load_settings(args.env_file)
        _configure_logging(settings.log_level)
        if command == "say":
            return asyncio.run(_say(settings, args))
        if command == "credits":
            return asyncio.run(_credits(settings))
        if command == "sync":
            return asyncio.run(_sync(settings, args.guild))
        return _run(settings)
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
    for voice in VOICES:
        print(f"{voice.name:<{width}}  {voice.character}")
    return EXIT_OK


def _run(settings: Settings) -> int:
    require(settings, "discord_token", "segmind_api_key")
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
    try:
        names = await sync_commands(settings, guild_id)
    except discord.LoginFailure:
        raise CliError(
            "Discord rejected DISCORD_TOKEN; copy the token again from the portal"
        ) from None
    where = f"server {guild_id}" if guild_id else "every server (may take up to an hour to show)"
    print(f"Synced {len(names)} commands to {where}: {', '.join(sorted(names))}")
    return EXIT_OK


async def _say(settings: Settings, args: argparse.Namespace) -> int:
    # Everything that can be checked for free is checked before the call that costs money.
    try:
        target = AudioFormat.from_extension(args.output.suffix)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if target is AudioFormat.PCM:
        raise CliError("write .ogg, .wav or .mp3 (raw PCM has no header to play it)", EXIT_USAGE)
    parent = args.output.resolve().parent
    if not parent.is_dir():
        raise CliError(f"the folder {parent} does not exist", EXIT_USAGE)
    request = build_request(
        args.text,
        voice=args.voice,
        voice_2=args.voice_2,
        temperature=args.temperature,
        max_length=settings.max_text_length,
        default_voice=settings.default_voice,
        default_temperature=settings.default_temperature,
    )
    require(settings, "segmind_api_key")
    async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
        client = SegmindClient.from_settings(session, settings)
        received = await _through_the_scheduler(settings, client, request)
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(None, _transcode, received, target)
    try:
        await loop.run_in_executor(None, args.output.write_bytes, data)
    except OSError as exc:
        raise CliError(f"could not write {args.output}: {exc.strerror or exc}") from None
    print(_summary(request, args.output, target, received.duration, len(data)))
    if client.remaining_credits is not None:
        print(f"Remaining credits: {client.remaining_credits:g}")
    return EXIT_OK


async def _through_the_scheduler(
    settings: Settings, client: SegmindClient, request: SpeechRequest
) -> audio_mod.Audio:
    """One request through the scheduler the bot uses, so the terminal paces, waits out 429s
    and retries exactly as Discord members are served. Its running commentary is for the
    bot's log; here the outcome is the one line the user reads (LOG_LEVEL=DEBUG shows it)."""
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
        balance = await client.get_credits()
    print(f"API key accepted. Credits: {balance.credits:g}, free credits: {balance.free_credits:g}")
    return EXIT_OK


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def _exit_code(exc: Exception) -> int:
    if isinstance(exc, SegmindError):
        return EXIT_FAILED
    return EXIT_USAGE


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
