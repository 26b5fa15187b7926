"""When to try again: reset headers on a 429, exponential back-off with jitter otherwise."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["MAX_HONOURED_WAIT", "backoff_delay", "parse_moment", "retry_after_seconds"]

#: Waits beyond this are treated as nonsense rather than honoured for hours.
MAX_HONOURED_WAIT = 900.0


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    rng: Callable[[], float] = random.random,
) -> float:
    """'Equal jitter' back-off for `attempt` (1-based): half fixed, half random, capped.

    Half fixed keeps retries from bunching at zero; half random spreads a crowd of clients.
    """
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rng() * ceiling / 2


def retry_after_seconds(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds to wait after a 429, from the first header that parses, or None.

    `now` is the wall clock (epoch seconds). `Retry-After` wins (seconds or HTTP date), then
    `x-rate-limit-reset-at-utc` (ISO 8601, HTTP date, or epoch seconds/milliseconds).
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    retry_after = lowered.get("retry-after")
    if retry_after is not None:
        wait = _parse_retry_after(retry_after.strip(), now)
        if wait is not None:
            return wait
    reset_at = lowered.get("x-rate-limit-reset-at-utc")
    if reset_at is not None:
        moment = parse_moment(reset_at.strip())
        if moment is not None:
            return _bounded(moment - now)
    return None


def _parse_retry_after(value: str, now: float) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        moment = _http_date(value)
        return None if moment is None else _bounded(moment - now)
    return _bounded(seconds) if math.isfinite(seconds) else None


def parse_moment(value: str) -> float | None:
    """An absolute time as epoch seconds, from ISO 8601, an HTTP date, or epoch s/ms."""
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or number <= 0:
            return None
        return number / 1000 if number > 1e12 else number
    iso = value.replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return _http_date(value)
    if moment.tzinfo is None:  # The header's name says UTC.
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _http_date(value: str) -> float | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _bounded(seconds: float) -> float | None:
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_HONOURED_WAIT)
