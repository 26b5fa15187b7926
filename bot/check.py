"""`python -m bot check`: everything the bot needs, looked at without starting it.

Each part gets one line, ✓ or ✗ (or ! for a warning, - for a part not in use), and a ✗ line
says what to do. Exit 0 only if no line is ✗. The settings come first: when they are invalid,
only what needs no settings (the voice libraries) is looked at, since every other part is
reached through them.

Nothing is changed: storage is inspected without creating or migrating it
(`bot.storage.probe`), Redis gets a key that expires by itself, the data directory a file
that is removed again. The Segmind key is tried through the configured SEGMIND_BASE_URL
only (the credits call costs nothing), and the Discord token through DISCORD_API_BASE_URL
(default: Discord's own API) with plain HTTP requests, so no gateway session is opened and
discord.py is not loaded. Every line goes out without any piece of a secret in it and with
URLs shown without their userinfo and query.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bot import __version__
from bot.config import Settings, load_settings, require
from bot.errors import (
    AuthenticationError,
    SegmindConnectionError,
    SegmindError,
    SettingsError,
    StorageError,
)
from bot.logs import secrets_of
from bot.redaction import Redactor, url_without_secrets, urls_without_secrets
from bot.storage.probe import inspect_storage
from bot.synthesis.client import SegmindClient
from bot.terminal import EXIT_FAILED, EXIT_OK, out

__all__ = ["DISCORD_API", "FAIL", "LOW_CREDIT_CALLS", "PASS", "SKIP", "WARN", "Line", "run_checks"]

PASS, FAIL, WARN, SKIP = "✓", "✗", "!", "-"
#: Where the Discord token is tried without DISCORD_API_BASE_URL (discord.py's own base).
DISCORD_API = "https://discord.com/api/v10"
#: The application flags that mean Message Content is enabled in the Developer Portal: the
#: approved intent (verified bots) and the toggle unverified bots have ("limited").
GATEWAY_MESSAGE_CONTENT = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
#: Fewer credits than this many calls (at PRICE_PER_CALL) left is worth a warning.
LOW_CREDIT_CALLS = 100
SEGMIND_CONSOLE = "https://cloud.segmind.com"
#: What discord.py imports for voice (discord/voice_client.py, voice_state.py); without any
#: of them it refuses every voice connection, not only end-to-end encrypted ones.
VOICE_MODULES = (("PyNaCl", ("nacl.secret", "nacl.utils")), ("davey", ("davey",)))


@dataclass(frozen=True, slots=True)
class Line:
    mark: str
    name: str
    text: str


Probe = Callable[[], Awaitable[list[Line]]]


async def run_checks(env_file: str) -> int:
    """Print one line per part of the setup, and a summary; 0 only if nothing failed."""
    show = _Printer()
    try:
        settings = load_settings(env_file)
    except SettingsError as exc:
        show(Line(FAIL, "Settings", f"{exc} Fix them, then run check again."), whole_urls=True)
        for line in _voice_libraries() + _opus():
            show(line)
        show.summary(unchecked="storage, Redis, Segmind and Discord were not checked")
        return EXIT_FAILED
    show.redactor = Redactor(secrets_of(settings))
    show(_settings_line(settings, env_file), whole_urls=True)
    probes: list[Probe] = [
        lambda: asyncio.to_thread(_data_dir, settings),
        lambda: _storage(settings),
        lambda: _redis(settings),
        lambda: _segmind(settings),
        lambda: _discord(settings),
        lambda: asyncio.to_thread(_voice_libraries),
        lambda: asyncio.to_thread(_opus),
    ]
    # All at once, each bounded, and printed in order as soon as the ones before are done.
    limit = settings.connect_timeout + settings.request_timeout
    tasks = [asyncio.create_task(_bounded(probe, limit)) for probe in probes]
    for task in tasks:
        for line in await task:
            show(line)
    show.summary()
    return EXIT_OK if not show.failed else EXIT_FAILED


class _Printer:
    """Writes the lines: no secret, no URL's userinfo or query, and plain marks where the
    terminal's encoding has no ✓."""

    def __init__(self) -> None:
        self.redactor = Redactor(())
        self.failed = self.warned = self.passed = 0
        encoding = getattr(sys.stdout, "encoding", None) or "ascii"
        try:
            (PASS + FAIL).encode(encoding)
            self._marks: dict[str, str] = {}
        except (UnicodeEncodeError, LookupError):
            self._marks = {PASS: "ok", FAIL: "FAIL"}
        self._encoding = encoding

    def __call__(self, line: Line, *, whole_urls: bool = False) -> None:
        """`whole_urls`: the line's URLs are shown whole (the settings' own advice, which never
        quotes a value: `postgresql://user:password@host/database` is a form to follow)."""
        self.failed += line.mark == FAIL
        self.warned += line.mark == WARN
        self.passed += line.mark == PASS
        text = f"{line.name}: {line.text}"
        text = self.redactor(text if whole_urls else urls_without_secrets(text))
        shown = f"{self._marks.get(line.mark, line.mark)} {text}"
        out(shown.encode(self._encoding, "replace").decode(self._encoding, "replace"))

    def summary(self, unchecked: str = "") -> None:
        if self.failed:
            problems = f"{self.failed} problem{'s' if self.failed > 1 else ''}"
            then = f"; {unchecked}" if unchecked else ""
            out(f"{problems} to fix (the lines marked {self._marks.get(FAIL, FAIL)}){then}.")
        elif self.warned:
            out(f"The bot can start; {self.warned} warning{'s' if self.warned > 1 else ''}.")
        else:
            out(f"All {self.passed} checks passed: the bot can start (version {__version__}).")


async def _bounded(probe: Probe, limit: float) -> list[Line]:
    """A probe's lines; an overrun or an unforeseen error is a ✗ line, never a traceback."""
    try:
        async with asyncio.timeout(limit):
            return await probe()
    except TimeoutError:
        return [Line(FAIL, "Check", f"a check took longer than {limit:g} s and was stopped")]
    except Exception as exc:
        detail = " ".join(str(exc).split())
        return [Line(FAIL, "Check", f"a check failed unexpectedly: {type(exc).__name__}: {detail}")]


def _settings_line(settings: Settings, env_file: str) -> Line:
    source = f"{env_file} and the environment" if Path(env_file).is_file() else "the environment"
    try:
        require(settings, "discord_token", "segmind_api_key")
    except SettingsError as exc:
        return Line(FAIL, "Settings", str(exc))
    return Line(PASS, "Settings", f"every value is valid (read from {source})")


def _data_dir(settings: Settings) -> list[Line]:
    return [_writable_folder("Data directory", settings.data_dir, "DATA_DIR")]


def _writable_folder(name: str, folder: Path, setting: str) -> Line:
    """Whether the bot can write in `folder`, or create it: a file is made there and removed."""
    folder = folder.absolute()
    if folder.exists() and not folder.is_dir():
        return Line(FAIL, name, f"{folder} is a file, not a folder: move it away or set {setting}")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return Line(FAIL, name, f"{folder} cannot be created: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".check-"):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc)
        return Line(
            FAIL,
            name,
            f"{existing} is not writable ({why}): give the bot's user write access, or set "
            f"{setting} to a folder it can write",
        )
    if existing != folder:
        return Line(PASS, name, f"{folder} does not exist yet; the bot creates it at start")
    return Line(PASS, name, f"{folder} is writable")


async def _storage(settings: Settings) -> list[Line]:
    try:
        state = await inspect_storage(settings)
    except StorageError as exc:
        return [Line(FAIL, "Storage", f"{str(exc).rstrip('.')}; {_storage_fix(settings)}")]
    where = f"{state.backend} {state.where}"
    if state.version is None:
        parent = _writable_folder("Storage", Path(state.where).parent, "DATABASE_URL")
        if parent.mark == FAIL:
            return [parent]
        return [Line(PASS, "Storage", f"{where} is not created yet; the bot creates it at start")]
    if state.version == state.latest:
        status = f"schema version {state.version} (current)"
    else:
        status = f"schema version {state.version}; the bot upgrades it to {state.latest} at start"
    busy = " (in use by a running bot)" if state.busy else ""
    return [Line(PASS, "Storage", f"{where}{busy}, {status}")]


def _storage_fix(settings: Settings) -> str:
    if settings.database_url.strip().lower().startswith("postgres"):
        return "start the server, or fix DATABASE_URL"
    return "fix the file or its permissions, or DATABASE_URL"


async def _redis(settings: Settings) -> list[Line]:
    if not settings.redis_url:
        return [Line(SKIP, "Redis", "not used (REDIS_URL is empty): this process paces the key")]
    from redis import exceptions
    from redis.asyncio import Redis

    from bot.synthesis.cluster import key_prefix
    from bot.synthesis.cluster.clips import eviction_problem

    shown = url_without_secrets(settings.redis_url)
    wait = settings.connect_timeout
    client: Redis = Redis.from_url(
        settings.redis_url, socket_connect_timeout=wait, socket_timeout=wait
    )
    api_key = settings.segmind_api_key.get_secret_value() if settings.segmind_api_key else ""
    key = key_prefix(api_key, settings.redis_key_prefix) + f"check:{uuid.uuid4().hex}"
    try:
        await client.ping()
        await client.set(key, b"1", px=10_000)  # Expires by itself should the delete not come.
        written = await client.get(key) == b"1"
        await client.delete(key)
        version = await _redis_version(client)
        problem = None
        if settings.cache_enabled and settings.cache_shared_mb > 0:
            problem = await eviction_problem(client, settings.cache_shared_mb * 1024 * 1024)
    except exceptions.ReadOnlyError:
        return [
            Line(
                FAIL,
                "Redis",
                f"{shown} refuses writes (a replica?): point REDIS_URL at the primary",
            )
        ]
    except exceptions.AuthenticationError as exc:
        return [
            Line(FAIL, "Redis", f"{shown} refused the login ({exc}): fix the password in REDIS_URL")
        ]
    except (exceptions.RedisError, OSError) as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        return [
            Line(
                FAIL, "Redis", f"{shown} does not answer ({detail}): start Redis, or fix REDIS_URL"
            )
        ]
    finally:
        await client.aclose()
    if not written:
        return [Line(FAIL, "Redis", f"{shown} did not keep a value written to it: fix REDIS_URL")]
    if problem:
        return [Line(WARN, "Redis", f"{shown} answers and takes writes{version}, but it {problem}")]
    return [Line(PASS, "Redis", f"{shown} answers and takes writes{version}")]


async def _redis_version(client: Any) -> str:
    """The server's version, if it tells (managed services may disable INFO)."""
    from redis import exceptions

    try:
        info = await client.info("server")
    except exceptions.ResponseError:
        return ""
    version = info.get("redis_version") if isinstance(info, dict) else None
    return f" (Redis {version})" if version else ""


async def _segmind(settings: Settings) -> list[Line]:
    if settings.segmind_api_key is None or not settings.segmind_api_key.get_secret_value():
        return [Line(SKIP, "Segmind", "not checked: SEGMIND_API_KEY is not set")]
    from bot.services import USER_AGENT

    url = url_without_secrets(settings.segmind_base_url)
    async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
        client = SegmindClient.from_settings(session, settings)
        try:
            balance = await client.get_credits()
        except AuthenticationError as exc:
            return [
                Line(
                    FAIL,
                    "Segmind",
                    f"{exc} (SEGMIND_BASE_URL={url}); copy SEGMIND_API_KEY again from "
                    f"{SEGMIND_CONSOLE}",
                )
            ]
        except SegmindConnectionError as exc:
            return [Line(FAIL, "Segmind", f"could not reach {url} ({exc}): fix SEGMIND_BASE_URL")]
        except SegmindError as exc:
            return [Line(FAIL, "Segmind", f"{exc} (SEGMIND_BASE_URL={url})")]
    total = balance.total
    credits = f"{total:g} credits"
    price = settings.price_per_call
    calls = f", about {int(total / price):,} calls" if price > 0 else ""
    if total <= 0:
        return [
            Line(
                FAIL,
                "Segmind",
                f"API key accepted at {url}, but no credits left: every speech call fails "
                f"until you add credits at {SEGMIND_CONSOLE}",
            )
        ]
    if price > 0 and total < LOW_CREDIT_CALLS * price:
        return [
            Line(
                WARN,
                "Segmind",
                f"API key accepted at {url}, but only {credits} left{calls}: add credits at "
                f"{SEGMIND_CONSOLE}",
            )
        ]
    return [Line(PASS, "Segmind", f"API key accepted at {url}; {credits}{calls}")]


async def _discord(settings: Settings) -> list[Line]:
    """Who the token logs in as, and whether Message Content is enabled for narration."""
    if settings.discord_token is None or not settings.discord_token.get_secret_value():
        return [Line(SKIP, "Discord", "not checked: DISCORD_TOKEN is not set")]
    base = settings.discord_api_base_url or DISCORD_API
    headers = {
        "Authorization": f"Bot {settings.discord_token.get_secret_value()}",
        "User-Agent": f"DiscordBot (gemini-tts-bot, {__version__})",
    }
    timeout = aiohttp.ClientTimeout(
        total=settings.request_timeout, sock_connect=settings.connect_timeout
    )
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        me = await _discord_get(session, base, "/users/@me")
        if isinstance(me, Line):
            return [me]
        name = str(me.get("username", "?"))
        if str(me.get("discriminator", "0")) not in {"0", "0000", ""}:
            name += f"#{me['discriminator']}"
        lines = [
            Line(PASS, "Discord", f"DISCORD_TOKEN accepted: the bot is {name} (id {me.get('id')})")
        ]
        if not settings.narration_enabled:
            lines.append(
                Line(SKIP, "Message Content intent", "not needed (NARRATION_ENABLED=false)")
            )
            return lines
        application = await _discord_get(session, base, "/applications/@me")
        if isinstance(application, Line):
            return [*lines, application]
    flags = int(application.get("flags") or 0)
    if flags & (GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED):
        lines.append(
            Line(PASS, "Message Content intent", "enabled, so narration can read messages")
        )
    else:
        lines.append(
            Line(
                FAIL,
                "Message Content intent",
                "not enabled, so narration cannot read messages: enable it in the Developer "
                "Portal (Bot -> Privileged Gateway Intents -> Message Content Intent), or set "
                "NARRATION_ENABLED=false",
            )
        )
    return lines


async def _discord_get(
    session: aiohttp.ClientSession, base: str, path: str
) -> dict[str, Any] | Line:
    """One GET of Discord's REST API: its JSON object, or the ✗ line saying what went wrong."""
    shown = url_without_secrets(base)
    try:
        # Never follow a redirect: it would carry the token to wherever it points.
        async with session.get(f"{base}{path}", allow_redirects=False) as response:
            if response.status == 401:
                return Line(
                    FAIL,
                    "Discord",
                    f"DISCORD_TOKEN was rejected (HTTP 401 from {shown}): copy the token again "
                    "from the Developer Portal (Bot -> Reset Token)",
                )
            if response.status != 200:
                return Line(
                    FAIL,
                    "Discord",
                    f"{shown}{path} answered HTTP {response.status}: try again later, or fix "
                    "DISCORD_API_BASE_URL",
                )
            document = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        return Line(
            FAIL,
            "Discord",
            f"could not reach {shown} ({detail}): check the network, or DISCORD_API_BASE_URL",
        )
    if not isinstance(document, dict):
        return Line(FAIL, "Discord", f"{shown}{path} did not answer with a JSON object")
    return document


def _voice_libraries() -> list[Line]:
    missing = [name for name, modules in VOICE_MODULES if not _importable(modules)]
    if not missing:
        return [Line(PASS, "Voice", "PyNaCl and davey present (discord.py needs both to join)")]
    names = " and ".join(missing)
    return [
        Line(
            FAIL,
            "Voice",
            f"{names} missing: discord.py refuses every voice connection without "
            f"{'them' if len(missing) > 1 else 'it'} (Discord requires end-to-end encrypted "
            "voice), so the bot cannot speak in any voice channel; install "
            "discord.py[voice] (pip install 'discord.py[voice]')",
        )
    ]


def _importable(modules: tuple[str, ...]) -> bool:
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError:
        return False
    return True


def _opus() -> list[Line]:
    """The bot encodes every clip to Opus itself with PyAV's libopus (discord.py's own
    libopus, the system's libopus0, is never used for that)."""
    import av

    try:
        av.codec.Codec("libopus", "w")
    except Exception:
        return [
            Line(
                FAIL,
                "Opus",
                "PyAV has no libopus encoder, so no speech can be played in voice channels: "
                "reinstall PyAV from its wheel (pip install --force-reinstall av)",
            )
        ]
    return [Line(PASS, "Opus", f"libopus encoder present (PyAV {av.__version__})")]
