"""Unexpected errors told to the operator, not only written to the log.

An error with a reference id (a command that failed on the bot's side, a message narration
could not read) is a bug or a broken dependency: the member is told "something went wrong",
and until now only someone reading the log knew. Each one now also goes to the operator's
alert channel (or the owner's DMs), with its reference so the traceback is one search away.

A loop that fails on every message must not flood that channel, nor Discord's rate limits:
at most one alert per kind (where it happened and the exception's type) in `interval`
seconds; the next one says how many of that kind were not sent meanwhile (the log has every
one, each under its own reference). The exception's text is shown redacted of every secret
(`bot.redaction`: no run of 8 of a secret's characters) and cut short; delivery runs in the
background, so the code reporting it never waits on Discord, and a failed delivery is logged,
never reported again.

Several processes (shards across processes, `REDIS_URL`) often hit the same bug at once: with
`once` (`bot.synthesis.cluster.OncePerCluster.first`) the kind is claimed cluster-wide for the
interval before sending, so the operator gets one alert per kind, not one per process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from bot.redaction import Redactor

__all__ = ["ALERT_INTERVAL", "DETAIL_CHARS", "ErrorAlerts", "alert_line"]

log = logging.getLogger(__name__)

#: At most one alert per kind of error in this many seconds.
ALERT_INTERVAL = 60.0
#: The exception's own text is cut to this many characters (the log has all of it).
DETAIL_CHARS = 300


def alert_line(where: str, ref: str, detail: str, *, held: int = 0) -> str:
    """The operator's message for one unexpected error."""
    line = (
        f"🐞 Unexpected error in {where} (ref `{ref}`): {detail}. "
        f"The log has its traceback under ref={ref}."
    )
    if held:
        more = "1 more" if held == 1 else f"{held} more"
        line += f" {more} of this kind since the last alert (each in the log with its ref)."
    return line


class ErrorAlerts:
    """Sends each unexpected error to the operator through `send`, rate-limited per kind."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[object]],
        *,
        secrets: Iterable[str] = (),
        interval: float = ALERT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        once: Callable[[str, float], Awaitable[bool]] | None = None,
    ) -> None:
        self._send = send
        #: Asked (identity, interval) before sending: False when another process sends it.
        self.once = once
        self._redact = Redactor(secrets)
        self.interval = interval
        self._clock = clock
        #: When each kind was last sent, and how many of it were held back since.
        self._sent: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def report(self, where: str, ref: str, error: BaseException) -> bool:
        """Tell the operator of `error` (already logged under `ref`) unless one of its kind
        was told within the interval. True if an alert is on its way. Never raises: the
        caller is already handling a failure."""
        try:
            kind = (where, type(error).__qualname__)
            now = self._clock()
            last = self._sent.get(kind)
            if last is not None and now - last < self.interval:
                self._held[kind] = self._held.get(kind, 0) + 1
                return False
            self._sent[kind] = now
            line = alert_line(where, ref, self.describe(error), held=self._held.pop(kind, 0))
            identity = f"error:{where}:{kind[1]}"
            task = asyncio.get_running_loop().create_task(
                self._deliver(line, identity), name="error-alert"
            )
        except Exception:
            log.exception("Could not alert the operator of error ref=%s", ref)
            return False
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def describe(self, error: BaseException) -> str:
        """The exception's type and text on one line, free of secrets, cut short."""
        text = " ".join(str(error).split())
        detail = self._redact(f"{type(error).__name__}: {text}" if text else type(error).__name__)
        if len(detail) > DETAIL_CHARS:
            detail = detail[: DETAIL_CHARS - 1].rstrip() + "…"
        return detail

    async def close(self) -> None:
        """Shutdown: alerts still being sent are dropped (the log has them)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(self, line: str, identity: str) -> None:
        try:
            if self.once is not None and not await self.once(identity, self.interval):
                return  # another process of the cluster tells the operator
            await self._send(line)
        except Exception as exc:
            log.warning("Could not deliver the operator alert: %s", exc)
