"""One deadline for a whole message, inside the time Discord lets the bot answer.

An interaction token works for 15 minutes. A long message is several calls, each queued on
its own; without a deadline for the whole, the last chunk can be ready after the token has
expired: every chunk paid, nothing delivered. So a chat request gets one deadline: it is
refused up front, for free, when the queue cannot plausibly meet it, and whatever is still
unmade when it passes is withdrawn rather than paid for.
"""

from __future__ import annotations

import math

from bot.errors import BotError
from bot.locales import line

__all__ = ["DELIVERY_MARGIN", "DeadlineError", "estimate_seconds", "too_slow"]

#: Seconds kept back from the token's lifetime to join, encode and upload the file.
DELIVERY_MARGIN = 60.0


class DeadlineError(BotError):
    """The message cannot be (or was not) made in time to be delivered."""


def estimate_seconds(
    *, queued: int, calls: int, rpm: int, window: float, latency: float, parallel: int
) -> float:
    """A rough time to make `calls` more calls behind `queued` others: each needs a slot of
    the rate limit (the first may go at once), and they run at most `parallel` at a time."""
    slots = max(0, queued + calls - 1) * window / max(1, rpm)
    return slots + latency * math.ceil(calls / max(1, parallel))


def too_slow(estimate: float, within: float, calls: int) -> DeadlineError | None:
    """The refusal when `estimate` cannot fit in `within` seconds, else None."""
    if estimate <= within:
        return None
    minutes = f"{estimate / 60:.0f}"
    if calls > 1:
        said = line("deadline.too_long_many", parts=calls, minutes=minutes)
    else:
        said = line("deadline.too_long_one", minutes=minutes)
    return DeadlineError(f"estimate {estimate:.0f} s > {within:.0f} s", user_message=said)
