"""The Discord bot: the services container, the voice connections, and the cogs.

Startup opens the services (`bot.services`), then loads each extension in `cogs/` on its own,
so one broken cog is logged and the rest still work. Command sync is explicit
(`python -m bot sync`), except to a development guild.

When Discord cannot be reached at start (DNS, a network not up yet, a 5xx), the bot tries
again with back-off, one log line per attempt, rather than exiting: in a container a bot
that exits stays down unless a restart policy catches it, and a network blip is no reason.
Once connected, discord.py itself reconnects the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import pkgutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import discord
import yarl
from discord.ext import commands
from pydantic import SecretStr

import cogs
from bot import __version__
from bot.config import Settings, require
from bot.errors import SegmindError
from bot.health import Heartbeat, Status, health_path
from bot.incidents import ErrorAlerts
from bot.logs import secrets_of
from bot.metrics import MetricsServer, VoiceFigures, start_metrics
from bot.playback.connections import VoiceManager
from bot.playback.narration import NarrationReader
from bot.services import Alerts, Services, open_services
from bot.synthesis.cluster import (
    STATE_ALERT_TTL,
    OncePerCluster,
    check_redis,
    cluster_secret,
    hold_shards,
)
from bot.tree import CatalogueTranslator, TTSCommandTree

__all__ = [
    "RECONNECT_FIRST",
    "RECONNECT_MAX",
    "USER_AGENT",
    "ShardedTTSBot",
    "ShutdownPlan",
    "TTSBot",
    "apply_discord_base_url",
    "create_bot",
    "extension_names",
    "intents_for",
    "run_bot",
    "shutdown_plan",
    "sync_commands",
]

log = logging.getLogger(__name__)

USER_AGENT = f"gemini-tts-bot/{__version__} (+discord.py {discord.__version__})"
#: Seconds before the second attempt to reach Discord at start, doubling up to RECONNECT_MAX.
RECONNECT_FIRST = 1.0
RECONNECT_MAX = 60.0
#: Failures that mean "Discord (or the network) is not there yet", worth trying again.
_UNREACHABLE = (
    aiohttp.ClientConnectionError,
    TimeoutError,
    OSError,
    discord.GatewayNotFound,
    discord.DiscordServerError,
)
#: `sync` publishes commands and makes no speech call; the services still want a key.
_SYNC_PLACEHOLDER_KEY = "unused-by-sync"


@dataclass(frozen=True, slots=True)
class ShutdownPlan:
    """How a shutdown spends its time: running calls get `intake_grace`, then members are
    told, then the bot leaves voice, keeping `close_reserve` for the gateway and storage."""

    total: float
    intake_grace: float
    leave_reserve: float
    close_reserve: float


def shutdown_plan(total: float, grace: float) -> ShutdownPlan:
    """Fit SHUTDOWN_GRACE (for calls already running) into SHUTDOWN_TIMEOUT, keeping time to
    tell waiting members, leave voice and close: a budget, not a sum of separate waits."""
    close_reserve = min(1.0, total * 0.125)
    leave_reserve = close_reserve + min(1.0, total * 0.125)
    tell = min(2.0, total * 0.25)
    intake = max(0.0, min(grace, total - leave_reserve - tell))
    return ShutdownPlan(total, intake, leave_reserve, close_reserve)


def intents_for(settings: Settings) -> discord.Intents:
    """The least the features need: guilds for slash commands and the guild cache, voice
    states to find a member's voice channel and to leave when everyone has gone, and, only
    for narration, guild messages with their (privileged) content."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.voice_states = True
    if settings.narration_enabled:
        intents.guild_messages = True
        intents.message_content = True
    return intents


def extension_names() -> list[str]:
    """Every module in `cogs/` (private ones, starting with `_`, excepted)."""
    return sorted(
        f"{cogs.__name__}.{module.name}"
        for module in pkgutil.iter_modules(cogs.__path__)
        if not module.name.startswith("_")
    )


class TTSBot(commands.Bot):
    """The Discord side of the bot: it owns the command tree, the voice connections and the
    services container, and turns Discord events into calls on them. It keeps no speech
    logic of its own, so what it does can be tested without Discord."""

    def __init__(self, settings: Settings, *, sync_on_start: bool = True, **options: Any) -> None:
        options.setdefault("intents", intents_for(settings))
        super().__init__(
            command_prefix=commands.when_mentioned,
            tree_cls=TTSCommandTree,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            **options,
        )
        self.settings = settings
        self.sync_on_start = sync_on_start
        self._services: Services | None = None
        #: Discord voice connections and a player per server.
        self.playback = VoiceManager(
            self,
            idle_timeout=settings.voice_idle_timeout,
            max_queue=settings.voice_max_queue,
            reconnect_timeout=settings.voice_reconnect_timeout,
            stage_wait=settings.voice_stage_wait,
        )
        #: Extensions that failed to load, with why; a cog can show them to the operator.
        self.extension_errors: dict[str, BaseException] = {}
        self._responders: set[asyncio.Task[Any]] = set()
        #: Operator alerts under way; kept so the loop does not drop them half-sent.
        self._alerts: set[asyncio.Task[None]] = set()
        #: Unexpected errors told to the operator too, at most one per kind a minute.
        self._error_alerts = ErrorAlerts(self._alert, secrets=secrets_of(settings))
        #: Which process of a cluster tells the operator (any, until the services are open).
        self._once = OncePerCluster(None, secret="")
        #: Narration's reader, set by its cog while loaded (its backlog is in the metrics).
        self.narration: NarrationReader | None = None
        self._heartbeat: Heartbeat | None = None
        self._metrics: MetricsServer | None = None

    @property
    def services(self) -> Services:
        """Storage, the API, pacing, cache and the speech pipeline: opened in setup_hook,
        before any command or event can run."""
        if self._services is None:
            raise RuntimeError("the services are not open yet")
        return self._services

    async def setup_hook(self) -> None:
        self._services = await open_services(
            self.settings,
            alerts=Alerts(
                on_halt=self._alert_halt,
                on_resume=self._alert_resume,
                on_limit_learned=self._alert_limit_learned,
            ),
            user_agent=USER_AGENT,
        )
        self._once = OncePerCluster(
            self._services.cluster,
            secret=cluster_secret(self.settings),
            namespace=self.settings.redis_key_prefix,
        )
        self._error_alerts.once = self._once.first
        # Before any sync: descriptions go out in every language.
        await self.tree.set_translator(CatalogueTranslator())
        await self.load_cogs()
        if self.sync_on_start:  # A running bot, not `sync`: tell Docker and Prometheus.
            self._heartbeat = Heartbeat(health_path(self.settings), self.health_status)
            self._heartbeat.start()
            self._metrics = await start_metrics(
                self._services,
                voice=self.voice_figures,
                health=self.health_status,
                heartbeat=self._heartbeat,
            )
        if self.sync_on_start and self.settings.dev_guild_id:
            guild = discord.Object(self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("Synced %d commands to development guild %s", len(synced), guild.id)

    async def load_cogs(self) -> None:
        for name in extension_names():
            try:
                await self.load_extension(name)
            except Exception as exc:
                self.extension_errors[name] = exc
                log.exception("Extension %s failed to load; the others still work", name)
            else:
                log.info("Loaded %s", name)

    async def on_message(self, message: discord.Message, /) -> None:
        """Every command is a slash command, so no message is parsed as a prefix command: a
        mention of the bot is just a message (listeners such as narration still get it),
        not a CommandNotFound with a traceback in the log."""

    async def on_ready(self) -> None:
        log.info("Ready as %s in %d servers", self.user, len(self.guilds))
        if self._heartbeat is not None:
            await self._heartbeat.beat()  # Healthy from now, not at the next beat.

    def health_status(self) -> Status:
        """For the heartbeat and /healthz: connected to the gateway, and speech not paused."""
        connected = self.is_ready() and not self.is_closed() and math.isfinite(self.latency)
        halted = self._services.scheduler.halted if self._services is not None else None
        return Status(gateway_connected=connected, halted=str(halted) if halted else None)

    def voice_figures(self) -> VoiceFigures:
        """For the metrics: voice connections, and utterances waiting to be played."""
        players = [p for p in self.playback.players.values() if not p.closed]
        narration = self.narration
        waiting, oldest = narration.backlog() if narration is not None else (0, 0.0)
        return VoiceFigures(
            connections=sum(
                1
                for client in self.voice_clients
                if isinstance(client, discord.VoiceClient) and client.is_connected()
            ),
            backlog=sum(len(player.queue) for player in players),
            narration_backlog=waiting,
            narration_oldest_wait=oldest,
            narration_stale_skipped=narration.stale_skipped if narration is not None else 0,
        )

    def report_unexpected(self, where: str, ref: str, error: BaseException) -> None:
        """An unexpected error, already logged under `ref`, for the operator's alert."""
        self._error_alerts.report(where, ref, error)

    @contextlib.contextmanager
    def responding(self) -> Iterator[None]:
        """Mark the current task as answering a member, so shutdown waits for its last word."""
        task = asyncio.current_task()
        if task is not None:
            self._responders.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._responders.discard(task)

    async def close(self) -> None:
        """Stop taking requests, tell members whose requests were waiting, then disconnect;
        all within SHUTDOWN_TIMEOUT (`docker stop` kills after 10 s)."""
        loop = asyncio.get_running_loop()
        plan = shutdown_plan(self.settings.shutdown_timeout, self.settings.shutdown_grace)
        end = loop.time() + plan.total
        if self._services is not None:
            await self._services.stop_intake(grace=plan.intake_grace)
        current = asyncio.current_task()
        waiting = [task for task in self._responders if task is not current and not task.done()]
        if waiting:
            log.info("Waiting for %d member(s) to be told before closing", len(waiting))
            await asyncio.wait(waiting, timeout=max(0.1, end - loop.time() - plan.leave_reserve))
        try:
            async with asyncio.timeout(max(0.1, end - loop.time() - plan.close_reserve)):
                await self.playback.close()
        except TimeoutError:
            log.warning("Leaving voice took too long; closing anyway")
        await self._error_alerts.close()
        await super().close()
        if self._metrics is not None:
            await self._metrics.close()
        if self._heartbeat is not None:
            await self._heartbeat.stop()
        if self._services is not None:
            await self._services.close()

    async def _alert_halt(self, error: SegmindError) -> None:
        log.error("Speech paused for everyone: %s", error)
        if not await self._once.first("halt", STATE_ALERT_TTL, clears=("resume",)):
            return  # every process halts on the account: one of them tells the operator
        await self._alert(
            f"⚠️ Speech is paused for everyone: {error}. "
            "It resumes by itself once the Segmind account works again."
        )

    async def _alert_resume(self) -> None:
        log.warning("Speech resumed: the Segmind account works again")
        if not await self._once.first("resume", STATE_ALERT_TTL, clears=("halt",)):
            return
        await self._alert("✅ Speech has resumed: the Segmind account works again.")

    def _alert_limit_learned(self, rpm: int) -> None:
        """The scheduler learned the key's real limit: worth one message, not a log line only,
        since a wrong SEGMIND_RPM costs members a pause after every burst."""
        message = (
            f"ℹ️ Your Segmind key accepts about {rpm} calls a minute, fewer than "
            f"SEGMIND_RPM={self.settings.segmind_rpm}. The bot now paces itself at {rpm}; "
            f"set SEGMIND_RPM={rpm} to start there after a restart."
        )

        async def tell() -> None:
            if await self._once.first(f"limit:{rpm}", STATE_ALERT_TTL):
                await self._alert(message)

        task = asyncio.get_running_loop().create_task(tell(), name="alert-limit")
        self._alerts.add(task)
        task.add_done_callback(self._alerts.discard)

    async def _alert(self, message: str) -> None:
        """One message for the operator: the alert channel if set, else the owner's DMs."""
        try:
            if self.settings.alert_channel_id:
                channel = self.get_channel(
                    self.settings.alert_channel_id
                ) or await self.fetch_channel(self.settings.alert_channel_id)
                if isinstance(channel, discord.abc.Messageable):
                    await channel.send(message, allowed_mentions=discord.AllowedMentions.none())
                    return
            info = await self.application_info()
            owner: discord.User | None = info.owner
            if info.team is not None:  # A team's owner is a member record: fetch the user.
                team_owner = info.team.owner_id
                owner = await self.fetch_user(team_owner) if team_owner else None
            if owner is not None:
                await owner.send(message)
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.warning("Could not deliver the operator alert: %s", exc)


class ShardedTTSBot(TTSBot, commands.AutoShardedBot):
    """The same bot with automatic sharding, for large deployments."""


def create_bot(settings: Settings, **options: Any) -> TTSBot:
    """The bot; sharded if SHARDED, or SHARD_COUNT/SHARD_IDS split it across processes."""
    sharded = settings.sharded or settings.shard_count is not None or bool(settings.shard_ids)
    options.setdefault("guild_ready_timeout", settings.guild_ready_timeout)
    if settings.shard_count is not None:
        options.setdefault("shard_count", settings.shard_count)
    if settings.shard_ids:
        options.setdefault("shard_ids", list(settings.shard_ids))
    cls = ShardedTTSBot if sharded else TTSBot
    return cls(settings, **options)


async def apply_discord_base_url(settings: Settings) -> None:
    """Send discord.py's REST calls to DISCORD_API_BASE_URL (a REST proxy, or an emulator).

    discord.py builds every REST URL, webhooks and interaction callbacks included, from the
    class attribute `Route.BASE`. A non-sharded client then opens its hard-coded gateway
    rather than asking for one, so the gateway is asked of the same base (`GET /gateway/bot`,
    as sharded clients already do): through a proxy that is Discord's own gateway.
    """
    base = settings.discord_api_base_url
    if not base or settings.discord_token is None:
        return
    discord.http.Route.BASE = base
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        await http.static_login(settings.discord_token.get_secret_value())
        _, gateway, _ = await http.get_bot_gateway()
    finally:
        await http.close()
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    log.info("Discord REST base %s, gateway %s", base, gateway)


async def run_bot(settings: Settings) -> None:
    """Run until stopped; SIGTERM (docker stop) and Ctrl-C both shut down gracefully.

    If Discord refuses the Message Content intent (not enabled in the portal), the bot starts
    again without narration rather than not at all. If Discord cannot be reached, it tries
    again after 1 s, 2 s, 4 s… (at most RECONNECT_MAX), until it can or it is stopped.
    """
    require(settings, "discord_token", "segmind_api_key")
    if settings.redis_url:
        # Before the login: a Redis that refuses the bot is a configuration error, told now;
        # one that cannot be reached yet is an outage the services ride out.
        await check_redis(settings.redis_url)
    stop = asyncio.Event()
    # Before the login too: a shard another process runs is refused (`hold_shards`).
    async with hold_shards(settings):
        host = urlsplit(settings.discord_api_base_url or "https://discord.com").hostname
        attempt = 0
        while True:
            try:
                await apply_discord_base_url(settings)
                await _run_with_intents(settings, stop)
                return
            except _UNREACHABLE as exc:
                if stop.is_set():
                    return
                attempt += 1
                delay = min(RECONNECT_MAX, RECONNECT_FIRST * 2 ** (attempt - 1))
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())
                log.warning(
                    "Discord unreachable (%s): %s; trying again in %.0f s (attempt %d)",
                    host,
                    detail,
                    delay,
                    attempt,
                )
                if await _stopped_within(stop, delay):
                    return


async def _run_with_intents(settings: Settings, stop: asyncio.Event) -> None:
    try:
        await _run_once(settings, stop)
    except discord.PrivilegedIntentsRequired:
        if not settings.narration_enabled:
            raise
        log.warning(
            "Discord refused the Message Content intent, so narration is off. Enable it in the "
            "Developer Portal (Bot -> Privileged Gateway Intents), or set NARRATION_ENABLED=false."
        )
        await _run_once(settings.model_copy(update={"narration_enabled": False}), stop)


async def _stopped_within(stop: asyncio.Event, delay: float) -> bool:
    """Wait `delay` s between attempts; True if SIGTERM or Ctrl-C came meanwhile."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        return False
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return True


async def _run_once(settings: Settings, stop: asyncio.Event) -> None:
    assert settings.discord_token is not None
    bot = create_bot(settings)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def shut_down() -> None:
        stop.set()
        stopping.append(loop.create_task(bot.close()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, shut_down)
    try:
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    if stopping:
        await asyncio.gather(*stopping, return_exceptions=True)


async def sync_commands(settings: Settings, guild_id: int | None) -> list[str]:
    """Push the command list to Discord: to one guild (instant) or globally (up to an hour).

    Only DISCORD_TOKEN is needed: no speech is made, so a missing Segmind key is replaced by
    a placeholder the services hold but never send."""
    require(settings, "discord_token")
    assert settings.discord_token is not None
    token = settings.discord_token.get_secret_value()
    if settings.segmind_api_key is None or not settings.segmind_api_key.get_secret_value():
        settings = settings.model_copy(update={"segmind_api_key": SecretStr(_SYNC_PLACEHOLDER_KEY)})
    await apply_discord_base_url(settings)
    bot = create_bot(settings, sync_on_start=False)
    async with bot:
        await bot.login(token)
        if guild_id is not None:
            guild = discord.Object(guild_id)
            bot.tree.copy_global_to(guild=guild)
            synced = await bot.tree.sync(guild=guild)
        else:
            synced = await bot.tree.sync()
    return [command.name for command in synced]
