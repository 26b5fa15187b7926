"""The breaker: one operator problem stops every call until a probe says it is fixed.

A bad API key, an empty account or a wrong model fails every call the same way, and members
cannot fix it. Failing each queued request in turn would spend calls (and money, and rate) on
answers already known, so the scheduler trips this breaker instead: it tells the operator
once (`on_halt`), then asks `probe` every `halt_probe_interval` seconds whether the account
works again, and on a yes closes the breaker and says so (`on_resume`). Without a probe, calls
stay halted until the bot restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.errors import SegmindError
from bot.synthesis.scheduler.config import Clock

__all__ = ["Breaker", "fresh"]

log = logging.getLogger(__name__)


def fresh(error: SegmindError) -> SegmindError:
    """A new error of the same type and message, so each ticket raises its own instance."""
    return type(error)(
        error.detail,
        status=error.status,
        upstream_message=error.upstream_message,
        user_message=error.user_message,
    )


class Breaker:
    """Whether calls are halted, and the task that probes until they may resume."""

    def __init__(
        self,
        clock: Clock,
        interval: float,
        *,
        probe: Callable[[], Awaitable[bool]] | None,
        on_halt: Callable[[SegmindError], Awaitable[None]] | None,
        on_resume: Callable[[], Awaitable[None]] | None,
        resumed: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._probe = probe
        self._on_halt = on_halt
        self._on_resume = on_resume
        self._resumed = resumed  # the scheduler's own hook, called before `on_resume`
        self._error: SegmindError | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def error(self) -> SegmindError | None:
        """The operator problem that halted calls; None while calls may run."""
        return self._error

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The latest notify-and-probe task (the scheduler cancels it on close)."""
        return self._task

    def trip(self, error: SegmindError) -> None:
        """Halt calls for `error`; then tell the operator and probe, in a task of its own."""
        self._error = error
        log.error("Speech calls halted: %s", error)
        self._task = asyncio.get_running_loop().create_task(
            self._while_halted(error), name="speech-scheduler-halt"
        )

    async def _while_halted(self, error: SegmindError) -> None:
        if self._on_halt is not None:
            try:
                await self._on_halt(error)
            except Exception:
                log.exception("on_halt failed")
        if self._probe is None:
            log.error("No probe configured: calls stay halted until the bot restarts")
            return
        while True:
            await self._clock.sleep(self._interval)
            try:
                ok = await self._probe()
            except Exception:
                log.exception("The halt probe failed")
                ok = False
            if ok:
                break
            log.info(
                "Still halted (%s); next check in %.0f s", type(error).__name__, self._interval
            )
        self._error = None
        log.warning("Speech calls resumed: the probe says the account works again")
        self._resumed()
        if self._on_resume is not None:
            try:
                await self._on_resume()
            except Exception:
                log.exception("on_resume failed")
