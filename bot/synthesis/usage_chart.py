"""A server's last 30 days at a glance (`/usage server`): a PNG chart of requests and cost per
day, and the same figures as text, for screen readers and for anyone the image fails.

matplotlib is imported only when a chart is drawn, so the bot starts, and runs every other
command, without loading it; it draws on the Agg canvas of a `Figure` of its own, never
through pyplot's global state, so charts drawn in worker threads at once cannot mix.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date, timedelta

from bot.locales import text
from bot.storage import UsageSummary

__all__ = ["CHART_DAYS", "CHART_SIZE", "chart_days", "days_text", "draw_chart"]

#: Days shown, today included.
CHART_DAYS = 30
#: The PNG's size in pixels (width, height).
CHART_SIZE = (900, 540)
_DPI = 100
#: The most an embed field may hold.
_FIELD_LIMIT = 1024

Day = tuple[date, UsageSummary]


def chart_days(days: Sequence[Day], today: date, span: int = CHART_DAYS) -> list[Day]:
    """Every day of the span, oldest first, with the days nothing was asked for as zeros."""
    by_day = dict(days)
    first = today - timedelta(days=span - 1)
    return [
        (day, by_day.get(day, UsageSummary()))
        for day in (first + timedelta(days=n) for n in range(span))
    ]


def days_text(days: Sequence[Day], limit: int = _FIELD_LIMIT, locale: str | None = None) -> str:
    """The chart's figures as lines, newest first, only days with any use; as many as fit
    in `limit` characters, and how many older days did not (in the reader's language)."""
    used = [(day, summary) for day, summary in days if summary.calls]
    if not used:
        return text("usage.no_speech", locale)

    def earlier(count: int) -> str:
        key = "usage.earlier_one" if count == 1 else "usage.earlier_many"
        return text(key, locale, count=count)

    lines: list[str] = []
    for shown, (day, summary) in enumerate(reversed(used)):
        line = text(
            "usage.day",
            locale,
            day=day,
            paid=summary.api_calls,
            cached=summary.cached,
            cost=summary.cost,
        )
        rest = len(used) - shown - 1
        tail = f"\n{earlier(rest)}" if rest else ""
        if len("\n".join([*lines, line])) + len(tail) > limit:
            lines.append(earlier(len(used) - shown))
            break
        lines.append(line)
    return "\n".join(lines)


def draw_chart(days: Sequence[Day]) -> bytes:
    """The PNG: paid calls and cache hits side by side per day above, the estimated cost per
    day below. CPU work: run it in a worker thread."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = CHART_SIZE
    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    calls_axes, cost_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    positions = list(range(len(days)))
    bar = 0.4
    calls_axes.bar(
        [x - bar / 2 for x in positions],
        [summary.api_calls for _, summary in days],
        width=bar,
        label="Paid calls",
        color="#5865F2",
    )
    calls_axes.bar(
        [x + bar / 2 for x in positions],
        [summary.cached for _, summary in days],
        width=bar,
        label="From the cache (free)",
        color="#57F287",
    )
    calls_axes.set_ylabel("Requests")
    calls_axes.legend(loc="upper left", frameon=False)
    calls_axes.set_title("Speech in this server, last 30 days (UTC)")
    calls_axes.yaxis.get_major_locator().set_params(integer=True)
    cost_axes.bar(positions, [summary.cost for _, summary in days], color="#EB459E")
    cost_axes.set_ylabel("Estimated cost ($)")
    cost_axes.set_xticks(positions[::5], [f"{day:%b %d}" for day, _ in days][::5])
    for axes in (calls_axes, cost_axes):
        axes.spines[["top", "right"]].set_visible(False)
        axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=_DPI)
    return out.getvalue()
