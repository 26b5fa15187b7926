"""`python -m bot say`: one request through the bot's own scheduler into an audio file, or to
standard output (`-o -`, so `docker run … say … -o - > hello.ogg` needs no bind mount).

With REDIS_URL (a cluster's container) it runs on the bot's own services instead: the shared
rate window, the shared cache and the calls in flight, so a `say` is never a call the
cluster did not count, nor a second payment for audio another process already made.

Everything that can be checked for free is checked before the call that costs money. With the
audio on standard output, what is said about it (the summary, the credits) goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bot import audio as audio_mod
from bot.audio import AudioFormat
from bot.config import Settings, require
from bot.errors import SegmindConnectionError
from bot.redaction import url_without_secrets
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest, build_request
from bot.synthesis.client import SegmindClient
from bot.terminal import EXIT_OK, EXIT_USAGE, CliError, one_line, out, out_bytes

__all__ = ["SAY_FORMATS", "STDOUT", "TERMINAL_USER", "naming_the_host", "say", "warn_if_empty"]

log = logging.getLogger("bot")

#: What `say` writes; the other formats the audio package knows (raw PCM) have no header.
SAY_FORMATS = {".ogg": "Ogg Opus", ".opus": "Ogg Opus", ".wav": "WAV", ".mp3": "MP3"}
#: `say -o -`: the audio goes to standard output.
STDOUT = Path("-")
#: Who the terminal's requests are for, in the scheduler's fairness and the usage records.
TERMINAL_USER = 0


async def say(settings: Settings, args: argparse.Namespace) -> int:
    to_stdout = args.output == STDOUT
    target = _format(args.output, args.format, to_stdout)
    output: Path = args.output if to_stdout else args.output.resolve()
    if to_stdout and sys.stdout.isatty():
        raise CliError(
            "standard output is a terminal: redirect it (say … -o - > hello.ogg) or name a file",
            EXIT_USAGE,
        )
    if not to_stdout and not output.parent.is_dir():
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

    credits: float | None
    if settings.redis_url:
        with naming_the_host(settings):
            received, credits = await _through_the_cluster(settings, request)
    else:
        async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
            client = SegmindClient.from_settings(session, settings)
            with naming_the_host(settings):
                received = await _through_the_scheduler(settings, client, request)
            credits = client.remaining_credits
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(None, _transcode, received, target)
    # With the audio on standard output, what is said about it goes to stderr.
    tell = out if not to_stdout else functools.partial(print, file=sys.stderr)
    if to_stdout:
        out_bytes(data)
    else:
        try:
            await loop.run_in_executor(None, output.write_bytes, data)
        except OSError as exc:
            raise CliError(f"could not write {output}: {exc.strerror or exc}") from None
    where = "standard output" if to_stdout else str(output)
    tell(_summary(request, where, target, received.duration, len(data)))
    if credits is not None:
        tell(f"Remaining credits: {credits:g}")
        warn_if_empty(credits)
    return EXIT_OK


def _format(output: Path, chosen: str | None, to_stdout: bool) -> AudioFormat:
    """The format `say` writes: --format, else the file's extension (Ogg Opus on stdout)."""
    suffix = output.suffix.lower()
    if chosen is not None:
        target = AudioFormat.from_extension(chosen)
        if not to_stdout and suffix in SAY_FORMATS and AudioFormat.from_extension(suffix) != target:
            raise CliError(
                f"{output.name!r} is named {SAY_FORMATS[suffix]} but --format says "
                f"{SAY_FORMATS['.' + chosen]}: rename the file or change --format",
                EXIT_USAGE,
            )
        return target
    if to_stdout:
        return AudioFormat.OGG
    if suffix not in SAY_FORMATS:
        raise CliError(
            f"cannot write {output.name!r}: name the file {', '.join(SAY_FORMATS)}, "
            "or give --format",
            EXIT_USAGE,
        )
    return AudioFormat.from_extension(suffix)


@contextlib.contextmanager
def naming_the_host(settings: Settings) -> Iterator[None]:
    """A DNS failure says only "ClientConnectorDNSError": say which host, and which setting."""
    try:
        yield
    except SegmindConnectionError as exc:
        url = url_without_secrets(settings.segmind_base_url)
        host = urlsplit(url).hostname or url
        raise CliError(
            f"could not reach {host} (SEGMIND_BASE_URL={url}): {one_line(exc)}"
        ) from None


def warn_if_empty(credits: float) -> None:
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

    with _quiet("bot.synthesis"):
        scheduler = build_scheduler(settings, client)
        try:
            return await scheduler.submit(request, Requester(TERMINAL_USER, cooldown=0)).result()
        finally:
            await scheduler.close(grace=0)


async def _through_the_cluster(
    settings: Settings, request: SpeechRequest
) -> tuple[audio_mod.Audio, float | None]:
    """With REDIS_URL, `say` is one more process on the key: the services the bot runs on,
    so it takes its start from the shared window, finds what any process made in the shared
    cache, and joins an identical call another process is making instead of paying again.
    Returns the audio and the credits left after a call (None when no call was made)."""
    from bot.services import open_services

    with _quiet("bot.synthesis", "bot.services", "bot.storage"):
        services = await open_services(settings)
        try:
            # Uncapped: the terminal's user is one id for every `say` of the cluster, and a
            # script's fourth at once is no member flooding the queue.
            pending = await services.speech.source.begin(
                request, Requester(TERMINAL_USER, cooldown=0, capped=False)
            )
            received = await pending.result()
            return received, services.client.remaining_credits
        finally:
            await services.close()


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The bot's running commentary is for its log: silenced here unless LOG_LEVEL=DEBUG."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    if not log.isEnabledFor(logging.DEBUG):
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _transcode(received: audio_mod.Audio, target: AudioFormat) -> bytes:
    if received.format is target and target is not AudioFormat.OGG:
        return received.data  # Already the right container; Ogg may be Vorbis, so re-encode.
    return audio_mod.encode(audio_mod.decode_audio(received), target)


def _summary(
    request: SpeechRequest, where: str, target: AudioFormat, seconds: float, size: int
) -> str:
    voices = request.voice + (f" + {request.voice_2}" if request.voice_2 else "")
    kind = {AudioFormat.OGG: "Ogg Opus", AudioFormat.WAV: "WAV", AudioFormat.MP3: "MP3"}[target]
    return f"Wrote {where}: {voices}, {seconds:.2f} s, {kind}, {size / 1024:.1f} KiB"
