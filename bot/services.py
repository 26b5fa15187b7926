"""Everything the bot runs on, built from settings by one function and closed in one place.

Discord-TTS/Bot keeps its state in one `Data` struct; this is ours. The Discord bot, the
tests and the benches build it with `open_services`, so what is measured and tested is what
members use, and nothing is half-built: every field is there once the function returns.
Closing happens in two steps: stop taking work (waiting members are told), then release
what was opened in reverse order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from bot import __version__
from bot.audio.allocator import map_large_buffers
from bot.config import Settings
from bot.errors import SegmindError
from bot.storage import Storage, open_storage
from bot.synthesis.cache import AudioCache, Cache, NullCache
from bot.synthesis.client import SegmindClient
from bot.synthesis.cluster import (
    RedisFlights,
    RedisLimiter,
    RedisLink,
    RedisTurns,
    SharedCache,
    SharedClips,
    check_eviction,
    cluster_secret,
    key_prefix,
    open_link,
)
from bot.synthesis.scheduler import Scheduler, SchedulerConfig, Synthesize
from bot.synthesis.scheduler.gate import Gate
from bot.synthesis.service import SpeechService
from bot.synthesis.usage import UsageRecorder

__all__ = ["Alerts", "Services", "build_scheduler", "open_cache", "open_services"]

log = logging.getLogger(__name__)

USER_AGENT = f"gemini-tts-bot/{__version__}"
#: Seconds a clip stays in the audio cache's shared tier (Redis) after it was made.
SHARED_CLIP_TTL = 3600.0


@dataclass(frozen=True, slots=True)
class Alerts:
    """How the operator hears that speech stopped for everyone, and that it came back.

    The Discord bot sends these to a channel or the owner's DMs; elsewhere they are logged.
    """

    on_halt: Callable[[SegmindError], Awaitable[None]] | None = None
    on_resume: Callable[[], Awaitable[None]] | None = None
    #: The key refuses calls past this many a minute, fewer than SEGMIND_RPM says (told once).
    on_limit_learned: Callable[[int], None] | None = None


@dataclass(eq=False)
class Services:
    """The one state container: settings, storage, the API, pacing, cache and the pipeline."""

    settings: Settings
    storage: Storage
    usage: UsageRecorder
    session: aiohttp.ClientSession
    client: SegmindClient
    scheduler: Scheduler
    cache: Cache
    speech: SpeechService
    _stack: contextlib.AsyncExitStack = field(repr=False)
    #: The Redis every process on the key shares (REDIS_URL), and whether it answers.
    cluster: RedisLink | None = None

    async def stop_intake(self, *, grace: float | None = None) -> None:
        """Refuse new requests and fail the queued ones (their members are told), giving
        running calls `grace` s (SHUTDOWN_GRACE by default). Safe to call more than once."""
        self.speech.source.stop_waiting()
        await self.scheduler.close(grace=self.settings.shutdown_grace if grace is None else grace)

    async def close(self) -> None:
        """Stop taking work, then close everything in the reverse order it was opened."""
        await self.stop_intake()
        await self._stack.aclose()


def build_scheduler(
    settings: Settings,
    client: SegmindClient,
    *,
    alerts: Alerts | None = None,
    usage: UsageRecorder | None = None,
    synthesize: Synthesize | None = None,
    gate: Gate | None = None,
    config: SchedulerConfig | None = None,
) -> Scheduler:
    """The scheduler every way of asking shares, the terminal's `say` included: one retry
    engine, one pacing of the key. It is started before it is returned.

    `gate`: the window every process on the key shares (REDIS_URL), asked before each start.
    `config` replaces the one from the settings (benches scale the 60 s window down).
    """
    alerts = alerts or Alerts()

    async def account_works() -> bool:
        try:
            credits = await client.get_credits()
        except SegmindError as exc:
            log.info("Segmind still unavailable: %s", exc)
            return False
        return credits.total > 0

    scheduler = Scheduler(
        synthesize or client.synthesize,
        config or SchedulerConfig.from_settings(settings),
        probe=account_works,
        on_halt=alerts.on_halt,
        on_resume=alerts.on_resume,
        on_attempt=usage.record_attempt if usage is not None else None,
        on_limit_learned=alerts.on_limit_learned,
        gate=gate,
    )
    scheduler.start()
    return scheduler


async def open_cache(settings: Settings) -> Cache:
    """The audio cache the settings ask for: memory plus disk, memory alone, or none.

    The cache only saves money and time, so a disk tier that cannot be used (a read-only
    volume, a file where the directory should be) is logged and left out, never fatal.
    """
    if not settings.cache_enabled:
        return NullCache()
    memory = settings.cache_memory_mb * 1024 * 1024
    disk = settings.data_dir / "cache" if settings.cache_disk_mb > 0 else None
    cache = AudioCache(
        memory_bytes=memory, disk_dir=disk, disk_bytes=settings.cache_disk_mb * 1024 * 1024
    )
    try:
        await cache.open()
    except OSError as exc:
        log.warning(
            "The audio cache directory %s cannot be used (%s); running with the memory cache "
            "only. Fix its permissions or set CACHE_DISK_MB=0 to silence this.",
            disk,
            exc.strerror or exc,
        )
        return AudioCache(memory_bytes=memory)
    return cache


async def open_services(
    settings: Settings,
    *,
    alerts: Alerts | None = None,
    synthesize: Synthesize | None = None,
    user_agent: str = USER_AGENT,
    scheduler_config: SchedulerConfig | None = None,
) -> Services:
    """Open storage, the HTTP session, the client, the scheduler, the cache and the pipeline.

    `synthesize` replaces the client's call (benches and tests that fake the API in-process);
    `scheduler_config` the scheduler's knobs from the settings (benches with a short window).
    With REDIS_URL the processes on the key share its limit (the scheduler's gate), a
    cache tier (`SharedCache`, within CACHE_SHARED_MB), identical calls in flight
    (`RedisFlights`, whose answers are the shared clips themselves when they fit) and each
    member's cooldown and waiting cap (`RedisTurns`).
    If any step fails, what was already opened is closed again before the error propagates.
    """
    # Each answer's megabytes go back to the system when freed, not into a thread's heap.
    map_large_buffers()
    async with contextlib.AsyncExitStack() as stack:
        storage = await open_storage(settings)
        stack.push_async_callback(storage.close)
        usage = UsageRecorder(storage, price_per_call=settings.price_per_call)
        stack.push_async_callback(usage.drain)
        session = aiohttp.ClientSession(headers={"User-Agent": user_agent})
        stack.push_async_callback(session.close)
        client = SegmindClient.from_settings(session, settings)
        config = scheduler_config or SchedulerConfig.from_settings(settings)
        gate: Gate | None = None
        cluster: RedisLink | None = None
        key = settings.segmind_api_key
        secret = key.get_secret_value() if key is not None else ""
        namespace = settings.redis_key_prefix
        prefix = key_prefix(secret, namespace)
        if settings.redis_url:
            # Down or hung, Redis is an outage (this process paces alone until it answers);
            # refusing the bot (a wrong password) is a SettingsError naming REDIS_URL.
            cluster = await open_link(settings.redis_url)
            stack.push_async_callback(cluster.close)
            gate = RedisLimiter(cluster, api_key=secret, span=config.span, namespace=namespace)
        scheduler = build_scheduler(
            settings,
            client,
            alerts=alerts,
            usage=usage,
            synthesize=synthesize,
            gate=gate,
            config=config,
        )
        stack.push_async_callback(scheduler.close, grace=0)
        cache = await open_cache(settings)
        flights: RedisFlights | None = None
        turns: RedisTurns | None = None
        if cluster is not None:
            clips: SharedClips | None = None
            if settings.cache_enabled and settings.cache_shared_mb > 0:
                budget = settings.cache_shared_mb * 1024 * 1024
                clips = SharedClips(cluster, prefix=prefix, ttl=SHARED_CLIP_TTL, budget=budget)
                cache = SharedCache(cache, clips)
                # The clips share Redis with the window and claims: say so if it may evict.
                await check_eviction(cluster, settings.redis_url, budget)
            flights = RedisFlights(cluster, prefix=prefix, clips=clips)
            stack.push_async_callback(flights.settle)
            turns = RedisTurns(
                cluster,
                prefix=key_prefix(cluster_secret(settings), f"{namespace}:members"),
                cooldown=config.user_cooldown,
                cap=config.max_waiting_per_user,
                life=config.job_timeout + settings.request_timeout,
            )
            stack.push_async_callback(turns.settle)
        speech = SpeechService(
            settings,
            scheduler,
            storage=storage,
            usage=usage,
            cache=cache,
            flights=flights,
            turns=turns,
        )
        stack.push_async_callback(speech.source.drain)
        return Services(
            settings=settings,
            storage=storage,
            usage=usage,
            session=session,
            client=client,
            scheduler=scheduler,
            cache=cache,
            speech=speech,
            _stack=stack.pop_all(),
            cluster=cluster,
        )
    raise AssertionError("unreachable: the block above returns or raises")
