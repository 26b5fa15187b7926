"""Is the bot alive and useful? A heartbeat file the running bot rewrites, read by
`python -m bot health` (Docker's HEALTHCHECK) and served as /healthz beside the metrics.

A file in DATA_DIR, not a port: the health check then works with no port open (metrics are
off by default) and in any container that shares the data volume. Healthy means: the
heartbeat is fresh (the event loop is not stuck), the gateway is connected, and speech is not
paused for everyone (the key rejected or credits gone: the operator must act).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.config import Settings

__all__ = [
    "HEALTH_FILE",
    "HEARTBEAT_INTERVAL",
    "MAX_AGE",
    "Heartbeat",
    "Status",
    "check",
    "health_path",
    "judge",
]

log = logging.getLogger(__name__)

HEALTH_FILE = "health.json"
#: Seconds between two heartbeats; a heartbeat older than MAX_AGE means a stuck or dead bot.
HEARTBEAT_INTERVAL = 15.0
MAX_AGE = 4 * HEARTBEAT_INTERVAL


@dataclass(frozen=True, slots=True)
class Status:
    """What the running bot says about itself."""

    gateway_connected: bool
    #: Why speech is paused for everyone, if it is (already free of secrets).
    halted: str | None = None
    updated: float = 0.0
    pid: int = 0


def health_path(settings: Settings) -> Path:
    return settings.data_dir / HEALTH_FILE


def judge(status: Status | None, now: float) -> tuple[bool, str]:
    """Healthy or not, and one line saying why."""
    if status is None:
        return False, "unhealthy: no heartbeat: the bot is not running (or DATA_DIR differs)"
    age = now - status.updated
    if age > MAX_AGE:
        return False, f"unhealthy: the last heartbeat is {age:.0f} s old (the bot is stuck)"
    if not status.gateway_connected:
        return False, "unhealthy: not connected to Discord's gateway"
    if status.halted:
        return False, f"unhealthy: speech is paused for everyone: {status.halted}"
    return True, "healthy: connected to Discord, speech available"


def check(settings: Settings, now: float | None = None) -> tuple[bool, str]:
    """`python -m bot health`: judge the heartbeat the running bot left in DATA_DIR."""
    path = health_path(settings)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        status = Status(
            gateway_connected=bool(raw["gateway_connected"]),
            halted=str(raw["halted"]) if raw.get("halted") else None,
            updated=float(raw["updated"]),
            pid=int(raw.get("pid", 0)),
        )
    except FileNotFoundError:
        status = None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"unhealthy: cannot read {path}: {exc}"
    return judge(status, time.time() if now is None else now)


class Heartbeat:
    """Rewrites the health file every `interval` s from `probe()`, and removes it on stop,
    so a cleanly stopped bot is not mistaken for a stuck one for MAX_AGE seconds."""

    def __init__(
        self,
        path: Path,
        probe: Callable[[], Status],
        *,
        interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.path = path
        self._probe = probe
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        #: Epoch seconds of the last heartbeat written (0.0: none yet), for the metrics: a
        #: bot that answers scrapes but cannot write its heartbeat looks dead to Docker.
        self.last_beat = 0.0

    def status(self) -> Status:
        status = self._probe()
        return Status(status.gateway_connected, status.halted, time.time(), os.getpid())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def beat(self) -> None:
        """Write the current status now (atomically: a reader never sees half a file)."""
        status = self.status()
        await asyncio.to_thread(self._write, json.dumps(asdict(status)))
        self.last_beat = status.updated

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A temp file of its own per write: two beats at once (the timer and a state change)
        # must not rename one shared temp file from under each other.
        temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except OSError as exc:
                log.warning("Could not write the health file %s: %s", self.path, exc)
            await asyncio.sleep(self._interval)
