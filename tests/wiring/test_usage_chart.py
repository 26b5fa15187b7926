"""`/usage server` through the whole bot: the embed carries a PNG chart of the last 30 days
(decoded here: its size, and that it is not blank) and the same figures as text."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.image import imread

from bot.synthesis.usage_chart import CHART_SIZE
from tests import discord_fakes as df
from tests.wiring.harness import ALICE, BOB, Wired
from tests.wiring.test_settings import content


async def test_usage_server_attaches_a_chart_and_keeps_the_figures_as_text(wired: Wired) -> None:
    for text in ("One.", "Two.", "One."):  # The second "One." comes from the cache.
        await wired.invoke(
            df.slash_command("speak", user_id=BOB, permissions=df.MEMBER_PERMISSIONS, text=text)
        )
    assert wired.segmind.tts_calls == 2
    calls = await wired.invoke(df.slash_command("usage", subcommand="server", user_id=ALICE))
    answer = calls[-1]
    assert answer.json is not None
    (embed,) = answer.json["embeds"]
    assert embed["image"]["url"] == "attachment://usage-30-days.png"
    assert ": 2 paid, 1 from the cache, $" in content(answer)
    (png,) = answer.files.values()
    image = imread(io.BytesIO(png), format="png")
    height, width = image.shape[:2]
    assert (width, height) == CHART_SIZE
    # Not blank: many distinct colours (bars, text), not one background.
    colours = np.unique(image.reshape(-1, image.shape[-1]), axis=0)
    assert len(colours) > 10
    assert wired.segmind.tts_calls == 2  # Looking costs nothing.


async def test_a_server_without_use_still_gets_its_chart_and_says_so(wired: Wired) -> None:
    calls = await wired.invoke(df.slash_command("usage", subcommand="server", user_id=ALICE))
    assert "No speech in the last 30 days." in content(calls[-1])
    (png,) = calls[-1].files.values()
    assert imread(io.BytesIO(png), format="png").shape[:2] == CHART_SIZE[::-1]
