"""Prometheus metrics (`METRICS_PORT`, off by default) and /healthz, served by the bot itself.

Most figures are read from the stats the services already keep (the scheduler's counters,
the cache's, the speech source's coalescing count, the client's last balance) at scrape
time, by a custom collector: nothing in the speech path has to know metrics exist, and a
scrape always shows the current state. Only what needs every event (each HTTP attempt's
status and latency) listens to the client. The server runs on the bot's own event loop, so
the collector reads those objects on the thread that owns them.

It binds 127.0.0.1 by default: the numbers say how busy the bot is and how much credit is
left, which is nobody else's business; METRICS_HOST=0.0.0.0 opens it (in a container).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

from bot.health import Heartbeat, Status, judge
from bot.services import Services
from bot.synthesis.client import CallRecord
from bot.synthesis.scheduler.tally import Tally

__all__ = [
    "LATENCY_BUCKETS",
    "Metrics",
    "MetricsServer",
    "VoiceFigures",
    "histogram",
    "start_metrics",
]

log = logging.getLogger(__name__)

#: Speech takes about 18-20 s a call; the buckets resolve that range and its tail.
LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 10, 15, 20, 25, 30, 45, 60, 90, 120)


Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


@dataclass(frozen=True, slots=True)
class VoiceFigures:
    """What the Discord side knows: voice connections and utterances waiting to be played
    (narration's backlog and /speak played in voice), across every server; and narration's
    own backlog, counted in messages (several may share one call when it is behind)."""

    connections: int
    backlog: int
    #: Messages waiting to be read aloud (not yet playing), every server together.
    narration_backlog: int = 0
    #: Seconds the oldest of them has waited (0: none waits).
    narration_oldest_wait: float = 0.0
    #: Messages skipped since start as too old to be worth reading (`stale_after`).
    narration_stale_skipped: int = 0


class Metrics:
    """One registry per bot (not the library's global one), so tests can build many."""

    def __init__(
        self,
        services: Services,
        *,
        voice: Callable[[], VoiceFigures] | None = None,
        health: Callable[[], Status] | None = None,
        heartbeat: Heartbeat | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = services
        self.voice = voice
        self.health = health
        self.heartbeat = heartbeat
        self._monotonic = monotonic
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "tts_api_calls",
            "HTTP attempts at Segmind, by status (none: no answer, a timeout or a drop)",
            ["status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tts_api_call_seconds",
            "Time one HTTP attempt at Segmind took",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)
        services.client.add_listener(self._on_call)

    def _on_call(self, record: CallRecord) -> None:
        self.calls.labels(status=str(record.status) if record.status else "none").inc()
        self.latency.observe(record.elapsed)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Family]:
        """Called at each scrape: the services' own counters, as they are now."""
        scheduler = self.services.scheduler
        stats = scheduler.stats
        requests = CounterMetricFamily(
            "tts_requests",
            "Speech requests the scheduler finished, by outcome (failed includes expired)",
            labels=["outcome"],
        )
        for outcome, value in (
            ("served", stats.served),
            ("failed", stats.failed),
            ("expired", stats.expired),
            ("cancelled", stats.cancelled),
        ):
            requests.add_metric([outcome], value)
        yield requests
        yield CounterMetricFamily(
            "tts_rate_limited", "429 answers the scheduler waited out", value=stats.rate_limited
        )
        yield CounterMetricFamily("tts_retries", "Attempts retried", value=stats.retried)
        yield GaugeMetricFamily("tts_queue_length", "Requests waiting", value=stats.queued)
        yield GaugeMetricFamily("tts_calls_running", "Speech calls in flight", value=stats.running)
        waiting = [ticket.submitted_at for ticket in scheduler.queue_snapshot()]
        yield GaugeMetricFamily(
            "tts_queue_oldest_wait_seconds",
            "How long the longest-waiting queued request has waited (0: none waiting)",
            value=max(0.0, self._monotonic() - min(waiting)) if waiting else 0.0,
        )
        yield histogram(
            "tts_queue_wait_seconds",
            "How long each request waited in the queue before its first attempt started",
            scheduler.queue_waits,
        )
        yield GaugeMetricFamily(
            "tts_speech_halted",
            "1 while speech is paused for everyone (key rejected, credits gone)",
            value=1 if scheduler.halted is not None else 0,
        )
        yield from self._cache()
        credits = self.services.client.remaining_credits
        if credits is not None:
            yield GaugeMetricFamily(
                "tts_credits_remaining", "Segmind credits the last answer reported", value=credits
            )
        if self.voice is not None:
            yield from _voice(self.voice())
        yield from self._liveness()

    def _liveness(self) -> Iterable[Family]:
        """What the health check judges, as numbers an alert can watch."""
        if self.health is not None:
            yield GaugeMetricFamily(
                "tts_gateway_connected",
                "1 while connected to Discord's gateway",
                value=1 if self.health().gateway_connected else 0,
            )
        if self.heartbeat is not None:
            yield GaugeMetricFamily(
                "tts_heartbeat_timestamp_seconds",
                "When the bot last wrote its heartbeat file (DATA_DIR/health.json), epoch s",
                value=self.heartbeat.last_beat,
            )

    def _cache(self) -> Iterable[Family]:
        cache = self.services.cache.stats
        hits = CounterMetricFamily("tts_cache_hits", "Cache lookups answered", labels=["tier"])
        hits.add_metric(["memory"], cache.memory_hits)
        hits.add_metric(["disk"], cache.disk_hits)
        yield hits
        yield CounterMetricFamily("tts_cache_misses", "Cache lookups missed", value=cache.misses)
        size = GaugeMetricFamily("tts_cache_bytes", "Bytes of audio cached", labels=["tier"])
        size.add_metric(["memory"], cache.memory_bytes)
        size.add_metric(["disk"], cache.disk_bytes)
        yield size
        items = GaugeMetricFamily("tts_cache_items", "Clips cached", labels=["tier"])
        items.add_metric(["memory"], cache.memory_items)
        items.add_metric(["disk"], cache.disk_items)
        yield items
        yield CounterMetricFamily(
            "tts_cache_evictions", "Clips dropped to stay within bounds", value=cache.evictions
        )
        source = self.services.speech.source
        yield CounterMetricFamily(
            "tts_coalesced",
            "Requests that shared an identical call already in flight",
            value=source.coalesced,
        )
        yield CounterMetricFamily(
            "tts_shared_flights",
            "Calls not made because another process on the key made them (REDIS_URL)",
            value=source.shared_flights,
        )
        yield CounterMetricFamily(
            "tts_cache_answered",
            "Requests answered from the cache, with no API call",
            value=source.cache_hits,
        )


def histogram(name: str, documentation: str, tally: Tally) -> HistogramMetricFamily:
    """A histogram family from counts kept by the code that saw each value."""
    buckets = [(_le(bound), count) for bound, count in tally.cumulative()]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=tally.sum)


def _le(bound: float) -> str:
    """A bucket's bound as Prometheus writes it: `+Inf` for the last."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _voice(figures: VoiceFigures) -> Iterable[Family]:
    yield GaugeMetricFamily(
        "tts_voice_connections", "Voice channels the bot is in", value=figures.connections
    )
    yield GaugeMetricFamily(
        "tts_voice_backlog",
        "Utterances waiting to be played in voice (narration included)",
        value=figures.backlog,
    )
    yield GaugeMetricFamily(
        "tts_narration_backlog",
        "Messages waiting to be read aloud, every server together (not yet playing)",
        value=figures.narration_backlog,
    )
    yield GaugeMetricFamily(
        "tts_narration_oldest_wait_seconds",
        "How long the oldest message waiting to be read aloud has waited (0: none waiting)",
        value=figures.narration_oldest_wait,
    )
    yield CounterMetricFamily(
        "tts_narration_stale_skipped",
        "Messages not read aloud because they waited longer than the server's stale_after",
        value=figures.narration_stale_skipped,
    )


class MetricsServer:
    """GET /metrics (Prometheus text) and GET /healthz (200 or 503, one JSON object)."""

    def __init__(self, metrics: Metrics, health: Callable[[], Status] | None = None) -> None:
        self.metrics = metrics
        self._health = health
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("Metrics on http://%s:%d/metrics", host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        if self._health is None:
            return web.json_response({"healthy": True, "detail": "no health probe"})
        now = time.time()  # The probe is live, so it is as fresh as can be.
        healthy, detail = judge(replace(self._health(), updated=now), now)
        return web.json_response(
            {"healthy": healthy, "detail": detail}, status=200 if healthy else 503
        )


async def start_metrics(
    services: Services,
    *,
    voice: Callable[[], VoiceFigures] | None = None,
    health: Callable[[], Status] | None = None,
    heartbeat: Heartbeat | None = None,
) -> MetricsServer | None:
    """The server METRICS_PORT asks for, started; None when metrics are off."""
    settings = services.settings
    if settings.metrics_port is None:
        return None
    metrics = Metrics(services, voice=voice, health=health, heartbeat=heartbeat)
    server = MetricsServer(metrics, health)
    await server.start(settings.metrics_host, settings.metrics_port)
    return server
