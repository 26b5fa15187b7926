"""`/voice name` through the whole bot (real interactions, real command tree, real SQLite):
a spoken name follows Discord's nickname rule, with permissions as the payload grants them."""

from __future__ import annotations

from typing import Any

from tests import discord_fakes as df
from tests.wiring.harness import ALICE, BOB, Wired
from tests.wiring.test_settings import content

CHANGE_NICKNAME = 1 << 26
MANAGE_NICKNAMES = 1 << 27
#: An ordinary member of a server that leaves Change Nickname on, as Discord's default does.
RENAMES = df.MEMBER_PERMISSIONS | CHANGE_NICKNAME


def name(user_id: int, permissions: int, said_as: str, **options: Any) -> dict[str, Any]:
    return df.slash_command(
        "voice",
        subcommand="name",
        user_id=user_id,
        permissions=permissions,
        said_as=said_as,
        **options,
    )


async def spoken_name(wired: Wired, user_id: int) -> str | None:
    return (await wired.bot.services.storage.get_member(user_id)).spoken_name


def private(call: df.RestCall) -> bool:
    assert call.json is not None
    return bool(call.json["data"].get("flags", 0) & df.EPHEMERAL)


async def test_without_change_nickname_a_member_cannot_take_another_members_name(
    wired: Wired,
) -> None:
    (refused,) = await wired.invoke(name(ALICE, df.MEMBER_PERMISSIONS, "Bob"))
    assert private(refused)
    assert "Change Nickname" in content(refused)
    assert "Something went wrong" not in content(refused)
    assert await spoken_name(wired, ALICE) is None


async def test_with_change_nickname_a_member_sets_and_clears_their_spoken_name(
    wired: Wired,
) -> None:
    (saved,) = await wired.invoke(name(ALICE, RENAMES, "Nwin"))
    assert private(saved)
    assert "“Nwin”" in content(saved)
    assert await spoken_name(wired, ALICE) == "Nwin"
    # Clearing one's own takes no permission at all.
    (cleared,) = await wired.invoke(name(ALICE, df.MEMBER_PERMISSIONS, "clear"))
    assert "your display name" in content(cleared)
    assert await spoken_name(wired, ALICE) is None


async def test_a_member_with_manage_nicknames_clears_anyones_spoken_name(wired: Wired) -> None:
    await wired.invoke(name(BOB, RENAMES, "Alice"))
    manager = df.MEMBER_PERMISSIONS | MANAGE_NICKNAMES
    (done,) = await wired.invoke(name(ALICE, manager, "clear", member=df.Picked(BOB, "bob")))
    assert private(done)
    assert f"Cleared <@{BOB}>'s spoken name" in content(done)
    assert await spoken_name(wired, BOB) is None


async def test_without_manage_nicknames_another_members_name_stays(wired: Wired) -> None:
    await wired.invoke(name(BOB, RENAMES, "Robert"))
    (refused,) = await wired.invoke(name(ALICE, RENAMES, "clear", member=df.Picked(BOB, "bob")))
    assert private(refused)
    assert "Manage Nicknames" in content(refused)
    assert await spoken_name(wired, BOB) == "Robert"


async def test_nobody_sets_another_members_spoken_name(wired: Wired) -> None:
    (refused,) = await wired.invoke(
        name(ALICE, df.ALL_PERMISSIONS, "Robert", member=df.Picked(BOB, "bob"))
    )
    assert private(refused)
    assert "only clear" in content(refused)
    assert await spoken_name(wired, BOB) is None


async def test_a_spoken_name_is_set_only_from_a_server(wired: Wired) -> None:
    (refused,) = await wired.invoke(df.in_dm(name(ALICE, df.ALL_PERMISSIONS, "Bob")))
    assert "from a server" in content(refused)
    assert await spoken_name(wired, ALICE) is None
