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


async def test_a_members_opt_out_pace_and_second_voice_round_trip(storage: Storage) -> None:
    assert (await storage.get_member(7)).narrated
    saved = await storage.update_member(7, narrate_me=False, pace=" Slow ", voice_2="kore")
    assert (saved.narrate_me, saved.pace, saved.voice_2) == (False, "slow", "Kore")
    assert await storage.get_member(7) == saved
    assert not (await storage.get_member(7)).narrated
    for bad, says in (
        ({"pace": "ludicrous"}, "pace must be one of"),
        ({"narrate_me": "no"}, "narrate_me must be true or false"),
        ({"voice_2": "Nobody"}, "not one of the 30 voices"),
    ):
        with pytest.raises(ValueError, match=says):
            await storage.update_member(7, **bad)
    await storage.forget_member(7)
    assert (await storage.get_member(7)).narrated


async def test_a_servers_stage_prefix_repeat_and_pace_rules_round_trip(storage: Storage) -> None:
    default = await storage.get_guild(8)
    assert (
        default.narration_ignore_stage_audience,
        default.narration_require_prefix,
        default.narration_max_repeat,
        default.pace,
    ) == (False, "", 3, None)
    saved = await storage.update_guild(
        8,
        narration_ignore_stage_audience=True,
        narration_require_prefix=" ! ",
        narration_max_repeat=0,
        pace="fast",
    )
    assert (saved.narration_require_prefix, saved.narration_max_repeat) == ("!", 0)
    assert saved.narration_ignore_stage_audience is True
    assert await storage.get_guild(8) == saved
    for bad in (1, 11, -1, True):
        with pytest.raises(ValueError, match=r"0 \(read repeats as written\) or a whole number"):
            await storage.update_guild(8, narration_max_repeat=bad)
    with pytest.raises(ValueError, match="pace must be one of"):
        await storage.update_guild(8, pace="warp")
