"""Voice previews below Discord: one call per voice however many ask at once, kept on disk,
a damaged file made again, unknown voices and languages refused before any call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.audio import is_ogg_opus
from bot.config import Settings
from bot.errors import InvalidRequestError
from bot.synthesis.previews import Previews
from bot.synthesis.scheduler import Scheduler, SchedulerConfig
from bot.synthesis.service import SpeechService
from tests.synthesis.test_service import Synth


@pytest.fixture
async def previews(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[tuple[Previews, Synth]]:
    synth = Synth()
    scheduler = Scheduler(synth, SchedulerConfig(rpm=1000, user_cooldown=30))
    scheduler.start()
    speech = SpeechService(make_settings(), scheduler)
    yield Previews(speech, tmp_path / "previews"), synth
    await scheduler.close(grace=0)


async def test_members_asking_at_once_share_one_call_and_later_ones_read_the_disk(
    previews: tuple[Previews, Synth], tmp_path: Path
) -> None:
    store, synth = previews
    made = await asyncio.gather(*(store.get("kore") for _ in range(5)))
    assert len(synth.texts) == 1
    assert synth.texts[0].startswith("Hello, I'm Kore.")
    assert {preview.data for preview in made} == {made[0].data}
    assert is_ogg_opus(made[0].data)
    assert (tmp_path / "previews" / "en" / "Kore.ogg").read_bytes() == made[0].data
    fresh = Previews(store.speech, tmp_path / "previews")  # As after a restart.
    assert (await fresh.get("Kore")).data == made[0].data
    assert len(synth.texts) == 1
    assert store.made() == 1


async def test_a_damaged_preview_is_made_again(previews: tuple[Previews, Synth]) -> None:
    store, synth = previews
    await store.get("Puck")
    store.path("Puck", "en").write_bytes(b"not audio")
    assert is_ogg_opus((await store.get("Puck")).data)
    assert len(synth.texts) == 2


@pytest.mark.parametrize(
    ("voice", "language", "says"), [("Nobody", "en", "30 voices"), ("Kore", "xx", "“xx”")]
)
async def test_what_has_no_preview_is_refused_before_any_call(
    previews: tuple[Previews, Synth], voice: str, language: str, says: Any
) -> None:
    store, synth = previews
    with pytest.raises(InvalidRequestError, match=says):
        await store.get(voice, language)
    assert synth.texts == []
