"""Member and server settings against each real backend (a SQLite file, a PostgreSQL database):
defaults, partial updates, checks, and surviving a restart or another process."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import StorageError
from bot.storage import GuildSettings, MemberSettings, Storage
from bot.storage.validation import GUILD_CHECKS, MEMBER_CHECKS
from tests.storage.backends import Backend


async def test_unknown_member_and_server_get_defaults(storage: Storage) -> None:
    assert await storage.get_member(1) == MemberSettings(1, None, None, None)
    guild = await storage.get_guild(2)
    assert guild == GuildSettings.defaults(2)
    assert guild.narration_voice_only is True
    assert guild.narration_skip_prefix == ";"
    assert guild.narration_max_length == 300
    assert guild.narration_emoji == "name"
    assert guild.daily_quota is None


async def test_member_updates_are_partial_and_canonical(storage: Storage) -> None:
    first = await storage.update_member(1, voice="  kore ")
    assert first == MemberSettings(1, "Kore", None, None)
    second = await storage.update_member(1, temperature=1, style="  very   cheerful ")
    assert second == MemberSettings(1, "Kore", 1.0, "very cheerful")
    assert isinstance(second.temperature, float)
    assert await storage.get_member(1) == second
    assert await storage.get_member(2) == MemberSettings.defaults(2)


async def test_none_or_blank_clears_a_member_field(storage: Storage) -> None:
    await storage.update_member(1, voice="Puck", temperature=0.7, style="calm")
    assert await storage.update_member(1, voice=None, style="   ") == MemberSettings(
        1, None, 0.7, None
    )


async def test_update_without_changes_returns_what_is_stored(storage: Storage) -> None:
    await storage.update_member(1, voice="Puck")
    assert await storage.update_member(1) == MemberSettings(1, "Puck")
    assert await storage.update_guild(5) == GuildSettings.defaults(5)


async def test_reset_member_returns_to_defaults(storage: Storage) -> None:
    await storage.update_member(1, voice="Puck", temperature=0.9)
    await storage.update_member(2, voice="Kore")
    await storage.reset_member(1)
    await storage.reset_member(99)  # Nothing stored: not an error.
    assert await storage.get_member(1) == MemberSettings.defaults(1)
    assert await storage.get_member(2) == MemberSettings(2, "Kore")


async def test_server_updates_are_partial_and_keep_other_defaults(storage: Storage) -> None:
    updated = await storage.update_guild(7, daily_quota=20, allow_files=False)
    assert updated == dataclasses.replace(
        GuildSettings.defaults(7), daily_quota=20, allow_files=False
    )
    assert updated.allow_files is False
    assert updated.allow_voice is True
    again = await storage.update_guild(
        7, narration_channel_id=123, narration_emoji="drop", user_cooldown=2
    )
    assert again == dataclasses.replace(
        updated, narration_channel_id=123, narration_emoji="drop", user_cooldown=2.0
    )
    assert await storage.get_guild(7) == again
    assert await storage.get_guild(8) == GuildSettings.defaults(8)


async def test_none_clears_a_server_limit(storage: Storage) -> None:
    await storage.update_guild(7, daily_quota=5, allowed_role_id=42, narration_skip_prefix="")
    cleared = await storage.update_guild(7, daily_quota=None, allowed_role_id=None)
    assert cleared.daily_quota is None
    assert cleared.allowed_role_id is None
    assert cleared.narration_skip_prefix == ""


async def test_ids_and_fractions_round_trip_exactly(storage: Storage) -> None:
    """Discord ids need all 64 bits and settings full doubles, whatever the backend's types."""
    big = 2**63 - 1
    member = await storage.update_member(big, temperature=0.123456789012345, style="ü ✓ 'q' ;")
    assert member == MemberSettings(big, None, 0.123456789012345, "ü ✓ 'q' ;")
    assert await storage.get_member(big) == member
    guild = await storage.update_guild(
        big, narration_channel_id=big - 1, allowed_role_id=big - 2, user_cooldown=0.1 + 0.2
    )
    assert (guild.narration_channel_id, guild.allowed_role_id) == (big - 1, big - 2)
    assert guild.user_cooldown == 0.1 + 0.2
    assert await storage.get_guild(big) == guild


async def test_unknown_fields_are_refused_and_nothing_changes(storage: Storage) -> None:
    await storage.update_member(1, voice="Puck")
    with pytest.raises(ValueError, match="Unknown member setting: colour"):
        await storage.update_member(1, voice="Kore", colour="red")
    with pytest.raises(ValueError, match="Unknown server settings: guild_id, volume"):
        await storage.update_guild(2, volume=3, guild_id=9)
    assert await storage.get_member(1) == MemberSettings(1, "Puck")
    assert await storage.get_guild(2) == GuildSettings.defaults(2)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"voice": "Nobody"}, "not one of the 30 voices"),
        ({"voice": 3}, "voice must be a voice name"),
        ({"temperature": 2.5}, "temperature must be a number from 0 to 2"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"style": "x" * 101}, "style must be at most 100 characters"),
    ],
)
async def test_bad_member_values_are_refused(
    storage: Storage, changes: dict[str, Any], message: str
) -> None:
    await storage.update_member(1, voice="Puck", temperature=0.5)
    with pytest.raises(ValueError, match=message):
        await storage.update_member(1, **{"voice": "Kore", **changes})
    assert await storage.get_member(1) == MemberSettings(1, "Puck", 0.5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"daily_quota": -1}, "daily_quota must be a whole number from 0"),
        ({"daily_quota": 2.5}, "daily_quota"),
        ({"daily_quota": True}, "daily_quota"),
        ({"narration_emoji": "skip"}, "narration_emoji must be one of: name, drop"),
        ({"narration_voice_only": 1}, "narration_voice_only must be true or false"),
        ({"narration_channel_id": 0}, "narration_channel_id"),
        ({"allowed_role_id": 2**63}, "allowed_role_id"),
        ({"narration_skip_prefix": "!" * 11}, "narration_skip_prefix"),
        ({"narration_skip_prefix": None}, "narration_skip_prefix must be text"),
        ({"narration_max_length": 0}, "narration_max_length"),
        ({"max_text_length": 50_000}, "max_text_length"),
        ({"user_cooldown": -1}, "user_cooldown must be a number from 0 to 3600"),
        ({"user_cooldown": math.inf}, "user_cooldown"),
        ({"allow_files": None}, "allow_files must be true or false"),
    ],
)
async def test_bad_server_values_are_refused(
    storage: Storage, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await storage.update_guild(3, allow_voice=False, **changes)
    assert await storage.get_guild(3) == GuildSettings.defaults(3)


def test_every_setting_has_a_check() -> None:
    """A new field without a check could never be updated; this makes adding one loud."""
    member = {field.name for field in dataclasses.fields(MemberSettings)} - {"user_id"}
    guild = {field.name for field in dataclasses.fields(GuildSettings)} - {"guild_id"}
    assert set(MEMBER_CHECKS) == member
    assert set(GUILD_CHECKS) == guild


async def test_settings_survive_a_restart(backend: Backend) -> None:
    async with backend.open() as first:
        await first.update_member(1, voice="Charon", temperature=0.3)
        await first.update_guild(2, daily_quota=10, narration_say_names=False)
    async with backend.open() as second:
        assert await second.get_member(1) == MemberSettings(1, "Charon", 0.3)
        guild = await second.get_guild(2)
        assert (guild.daily_quota, guild.narration_say_names) == (10, False)


async def test_settings_are_visible_to_another_process(backend: Backend) -> None:
    async with backend.open() as storage:
        await storage.update_member(1, voice="Sulafat")
        await storage.update_guild(2, daily_quota=33)
    script = (
        "import asyncio\n"
        "from tests.storage.backends import open_from_env\n"
        "async def main():\n"
        "    async with open_from_env() as s:\n"
        "        print((await s.get_member(1)).voice, (await s.get_guild(2)).daily_quota)\n"
        "asyncio.run(main())\n"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        env=backend.child_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=30)
    assert child.returncode == 0, err.decode()
    assert out.decode().split() == ["Sulafat", "33"]


async def test_methods_need_a_connection(backend: Backend) -> None:
    storage = backend.open()
    with pytest.raises(StorageError, match="not connected"):
        await storage.get_member(1)
    await storage.connect()
    await storage.connect()  # Twice is harmless.
    await storage.update_member(1, voice="Puck")
    await storage.close()
    await storage.close()
    with pytest.raises(StorageError, match="not connected"):
        await storage.update_member(1, voice="Kore")


# A model check: any sequence of valid partial updates leaves exactly what a dict would hold.

_GUILD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "narration_channel_id": st.none() | st.integers(1, 2**63 - 1),
    "narration_voice_only": st.booleans(),
    "narration_skip_prefix": st.text(alphabet=";!#$.-~", max_size=10),
    "narration_max_length": st.integers(1, 4000),
    "narration_emoji": st.sampled_from(["name", "drop"]),
    "narration_say_names": st.booleans(),
    "max_text_length": st.none() | st.integers(1, 20_000),
    "user_cooldown": st.none() | st.floats(0, 3600),
    "daily_quota": st.none() | st.integers(0, 1_000_000),
    "allowed_role_id": st.none() | st.integers(1, 2**63 - 1),
    "allow_files": st.booleans(),
    "allow_voice": st.booleans(),
    "narration_stale_after": st.just(0) | st.integers(60, 3600),
}
_GUILD_CHANGE = st.sampled_from(sorted(_GUILD_VALUES)).flatmap(
    lambda name: st.tuples(st.just(name), _GUILD_VALUES[name])
)
_guild_ids = itertools.count(1)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.lists(_GUILD_CHANGE, max_size=4).map(dict), min_size=1, max_size=5))
def test_partial_server_updates_match_a_model(
    backend: Backend, steps: list[dict[str, Any]]
) -> None:
    guild_id = next(_guild_ids)

    async def run() -> None:
        expected = GuildSettings.defaults(guild_id)
        async with backend.open() as storage:
            for changes in steps:
                expected = dataclasses.replace(expected, **changes)
                assert await storage.update_guild(guild_id, **changes) == expected
            assert await storage.get_guild(guild_id) == expected

    asyncio.run(run())
