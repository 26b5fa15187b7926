"""Members' and servers' speech settings, on every backend: voice-message default, spoken
name, the "X said" wording, merging two speakers, and the server's dictionary (stored with the
server's settings, so resetting them removes it)."""

from __future__ import annotations

import pytest

from bot.speech.pronunciations import MAX_ENTRIES
from bot.storage import GuildSettings, Storage


async def test_member_voice_message_and_spoken_name_round_trip(storage: Storage) -> None:
    saved = await storage.update_member(1, voice_message=True, spoken_name="  Nwin  ")
    assert saved.voice_message is True
    assert saved.spoken_name == "Nwin"
    again = await storage.get_member(1)
    assert again == saved
    assert again.voice_message is True
    cleared = await storage.update_member(1, voice_message=None, spoken_name=" ")
    assert (cleared.voice_message, cleared.spoken_name) == (None, None)


async def test_said_wording_needs_its_name_and_goes_back_to_the_default(storage: Storage) -> None:
    assert (await storage.get_guild(5)).said == "{name} said"
    saved = await storage.update_guild(5, narration_said="{name} says")
    assert saved.said == "{name} says"
    for bad in ("says", "{name} and {name}", "{nom} says"):
        with pytest.raises(ValueError, match=r"\{name\}"):
            await storage.update_guild(5, narration_said=bad)
    assert (await storage.update_guild(5, narration_said=None)).said == "{name} said"


async def test_dictionary_is_stored_with_the_server_and_reset_with_it(storage: Storage) -> None:
    saved = await storage.update_guild(
        5, pronunciations=[("Nguyen", "Nwin"), ("k8s", "kubernetes"), ("NGUYEN", "win")]
    )
    assert saved.pronunciations == (("NGUYEN", "win"), ("k8s", "kubernetes"))
    assert (await storage.get_guild(5)).pronunciations == saved.pronunciations
    assert (await storage.get_guild(6)).pronunciations == ()
    await storage.update_guild(5, narration_merge_speakers=True)
    assert (await storage.get_guild(5)).pronunciations == saved.pronunciations
    reset = await storage.update_guild(5, pronunciations=GuildSettings.defaults(5).pronunciations)
    assert reset.pronunciations == ()
    assert reset.narration_merge_speakers is True


async def test_dictionary_is_bounded(storage: Storage) -> None:
    many = [(f"word{n}", "x") for n in range(MAX_ENTRIES + 1)]
    with pytest.raises(ValueError, match="at most 200"):
        await storage.update_guild(5, pronunciations=many)
    with pytest.raises(ValueError, match="limit is 100"):
        await storage.update_guild(5, pronunciations=[("w", "x" * 101)])
    assert (await storage.get_guild(5)).pronunciations == ()
