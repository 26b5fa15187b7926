"""A member's pace and opt-out, and a server's pace and narration rules, through the whole bot:
real interactions, the real command tree, real SQLite, the fake Segmind counting calls.
Choosing costs nothing; a pace is said to Gemini as a direction in the request's text."""

from __future__ import annotations

from typing import Any

from tests import discord_fakes as df
from tests.wiring.harness import ALICE, BOB, Wired
from tests.wiring.test_settings import content

MEMBER = df.MEMBER_PERMISSIONS


def voice_set(user_id: int, **options: Any) -> dict[str, Any]:
    return df.slash_command(
        "voice", subcommand="set", user_id=user_id, permissions=MEMBER, **options
    )


def spoken(wired: Wired) -> str:
    return str(wired.segmind.requests[-1].json_body["text"])


async def test_a_member_opts_out_of_narration_and_sees_it(wired: Wired) -> None:
    (saved,) = await wired.invoke(voice_set(ALICE, narrate_me=False))
    assert "Narration reads your messages: no" in content(saved)
    assert not (await wired.bot.services.storage.get_member(ALICE)).narrated
    (shown,) = await wired.invoke(
        df.slash_command("voice", subcommand="show", user_id=ALICE, permissions=MEMBER)
    )
    assert "never reads your messages, in any server" in content(shown)
    await wired.invoke(voice_set(ALICE, narrate_me=True))
    assert (await wired.bot.services.storage.get_member(ALICE)).narrated
    assert wired.segmind.tts_calls == 0


async def test_forget_me_deletes_the_opt_out_with_everything_else(wired: Wired) -> None:
    await wired.invoke(voice_set(ALICE, narrate_me=False, pace="slow"))
    await wired.invoke(df.slash_command("forget-me", user_id=ALICE, permissions=MEMBER))
    member = await wired.bot.services.storage.get_member(ALICE)
    assert (member.narrate_me, member.pace) == (None, None)


async def test_a_members_pace_is_a_direction_in_what_gemini_is_asked(wired: Wired) -> None:
    (saved,) = await wired.invoke(voice_set(ALICE, pace="slow"))
    assert "Pace: slow" in content(saved)
    await wired.invoke(df.slash_command("speak", user_id=ALICE, permissions=MEMBER, text="Hi."))
    assert spoken(wired) == "Say at a slow pace: Hi."
    await wired.invoke(
        df.slash_command(
            "speak", user_id=ALICE, permissions=MEMBER, text="Hi.", pace="fast", style="cheerful"
        )
    )
    assert spoken(wired) == "Say cheerfully, at a fast pace: Hi."
    assert wired.segmind.tts_calls == 2


async def test_the_servers_pace_applies_to_members_who_chose_none(wired: Wired) -> None:
    (saved,) = await wired.invoke(
        df.slash_command("settings", subcommand="speech", user_id=ALICE, pace="fast")
    )
    assert "Pace for members who chose none: fast" in content(saved)
    await wired.invoke(df.slash_command("speak", user_id=BOB, permissions=MEMBER, text="Yo."))
    assert spoken(wired) == "Say at a fast pace: Yo."
    await wired.invoke(voice_set(BOB, pace="normal"))  # Their own choice comes first.
    await wired.invoke(df.slash_command("speak", user_id=BOB, permissions=MEMBER, text="Yo!"))
    assert spoken(wired) == "Yo!"


async def test_only_managers_set_the_servers_pace(wired: Wired) -> None:
    (refused,) = await wired.invoke(
        df.slash_command(
            "settings", subcommand="speech", user_id=BOB, permissions=MEMBER, pace="slow"
        )
    )
    assert "Manage Guild permission" in content(refused)
    assert (await wired.bot.services.storage.get_guild(df.GUILD_ID)).pace is None


async def test_a_server_sets_its_narration_rules_and_sees_them(wired: Wired) -> None:
    (saved,) = await wired.invoke(
        df.slash_command(
            "settings",
            subcommand="narration",
            user_id=ALICE,
            require_prefix="!",
            ignore_stage_audience=True,
            max_repeat=5,
        )
    )
    text = content(saved)
    assert "Prefix a message needs to be read: `!` (said without it)" in text
    assert "Skip a Stage's audience: yes" in text
    assert "read at most 5 times" in text
    guild = await wired.bot.services.storage.get_guild(df.GUILD_ID)
    assert (guild.narration_require_prefix, guild.narration_max_repeat) == ("!", 5)
    (cleared,) = await wired.invoke(
        df.slash_command(
            "settings", subcommand="narration", user_id=ALICE, require_prefix="none", max_repeat=0
        )
    )
    assert "none: every message is read" in content(cleared)
    assert "A repeated character (“aaaaaaa”): read as written" in content(cleared)


async def test_a_repeat_count_of_one_gets_a_friendly_answer(wired: Wired) -> None:
    (refused,) = await wired.invoke(
        df.slash_command("settings", subcommand="narration", user_id=ALICE, max_repeat=1)
    )
    assert "narration_max_repeat must be 0 (read repeats as written)" in content(refused)
    assert "Something went wrong" not in content(refused)
    assert (await wired.bot.services.storage.get_guild(df.GUILD_ID)).narration_max_repeat == 3


async def test_by_default_the_new_narration_rules_are_shown_as_off_and_repeats_at_three(
    wired: Wired,
) -> None:
    (shown,) = await wired.invoke(df.slash_command("settings", subcommand="show", user_id=ALICE))
    text = content(shown)
    assert "Prefix a message needs to be read: none" in text
    assert "Skip a Stage's audience: no" in text
    assert "read at most 3 times" in text
