"""The 30-day chart's figures: every day present, the text within an embed field, and
matplotlib loaded only when a chart is drawn."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta

from bot.storage import UsageSummary
from bot.synthesis.usage_chart import CHART_DAYS, chart_days, days_text

TODAY = date(2025, 3, 30)


def test_every_day_of_the_span_is_there_oldest_first_with_zeros_for_quiet_days() -> None:
    busy = UsageSummary(calls=3, cached=1, cost=0.01)
    days = chart_days([(TODAY - timedelta(days=2), busy)], TODAY)
    assert len(days) == CHART_DAYS
    assert days[0][0] == TODAY - timedelta(days=29)
    assert days[-1] == (TODAY, UsageSummary())
    assert days[-3] == (TODAY - timedelta(days=2), busy)


def test_the_text_lists_days_with_use_newest_first() -> None:
    days = chart_days(
        [
            (date(2025, 3, 8), UsageSummary(calls=2, cached=1, cost=0.005)),
            (date(2025, 3, 10), UsageSummary(calls=4, cost=0.02)),
        ],
        TODAY,
    )
    assert days_text(days) == (
        "Mar 10: 4 paid, 0 from the cache, $0.020\nMar 08: 1 paid, 1 from the cache, $0.005"
    )


def test_the_text_fits_an_embed_field_and_says_what_it_left_out() -> None:
    days = chart_days(
        [(TODAY - timedelta(days=n), UsageSummary(calls=100 + n, cost=1.5)) for n in range(30)],
        TODAY,
    )
    text = days_text(days, limit=200)
    assert len(text) <= 200
    assert text.endswith("earlier days")
    assert text.startswith("Mar 30: 100 paid")


def test_matplotlib_is_not_loaded_until_a_chart_is_drawn() -> None:
    code = (
        "import sys, cogs.usage, bot.synthesis.usage_chart as c\n"
        "assert 'matplotlib' not in sys.modules\n"
        "c.draw_chart(c.chart_days([], __import__('datetime').date(2025, 1, 1)))\n"
        "assert 'matplotlib.pyplot' not in sys.modules and 'matplotlib' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
