"""A member's and a server's choices as pure rules: a pace said as a direction, a second
voice kept for dialogues, and the narration rules a server or a member can set (a required
prefix, a Stage's audience, repeated characters)."""

from __future__ import annotations

import pytest

from bot.errors import InvalidRequestError
from bot.speech.cleanup import CleanupOptions, MessageFacts, clean_message
from bot.speech.narration import NarrationRules, Narrator, skip_reason
from bot.speech.request import build_request, looks_like_dialogue
from bot.speech.styles import apply_style, direction
from bot.storage import GuildSettings, MemberSettings
from bot.synthesis.cache.key import cache_key


@pytest.mark.parametrize(
    ("style", "pace", "said"),
    [
        (None, "slow", "Say at a slow pace"),
        (None, "fast", "Say at a fast pace"),
        ("cheerful", "slow", "Say cheerfully, at a slow pace"),
        ("whispering", "fast", "Whisper, at a fast pace"),
        ("cheerful", "normal", "Say cheerfully"),
        (None, "normal", ""),
        (None, None, ""),
    ],
)
def test_a_pace_joins_the_style_as_one_direction(
    style: str | None, pace: str | None, said: str
) -> None:
    assert direction(style, pace) == said


def test_a_normal_pace_asks_for_exactly_what_no_pace_asks_for() -> None:
    assert apply_style("Hello.", None, "normal") == "Hello."
    assert build_request("Hello.", pace="normal") == build_request("Hello.")


def test_each_pace_is_its_own_cached_clip() -> None:
    keys = {
        cache_key(build_request("Hello there.", pace=pace), model="m")
        for pace in ("slow", "normal", "fast")
    }
    assert len(keys) == 3


def test_an_unknown_pace_is_refused_by_name() -> None:
    with pytest.raises(InvalidRequestError, match="slow, normal, fast"):
        build_request("Hello.", pace="ludicrous")


@pytest.mark.parametrize(
    ("text", "dialogue"),
    [
        ("Joe: Hi!\nJane: Hello, Joe.", True),
        ("  joe: one\nJOE: two", False),
        ("Note: this is one voice.", False),
        ("Just words.", False),
    ],
)
def test_a_dialogue_is_two_labelled_speakers(text: str, dialogue: bool) -> None:
    assert looks_like_dialogue(text) is dialogue


def test_a_member_is_narrated_unless_they_said_no() -> None:
    assert MemberSettings(1).narrated
    assert MemberSettings(1, narrate_me=True).narrated
    assert not MemberSettings(1, narrate_me=False).narrated


def test_the_new_narration_rules_come_from_the_server_and_default_to_off() -> None:
    rules = NarrationRules.from_guild(GuildSettings.defaults(1), text_limit=2000)
    assert (rules.require_prefix, rules.ignore_stage_audience, rules.max_repeat) == ("", False, 3)
    chosen = GuildSettings(
        1,
        narration_require_prefix="!",
        narration_ignore_stage_audience=True,
        narration_max_repeat=0,
    )
    rules = NarrationRules.from_guild(chosen, text_limit=2000)
    assert (rules.require_prefix, rules.ignore_stage_audience, rules.max_repeat) == ("!", True, 0)


def reason(content: str, rules: NarrationRules, *, stage_audience: bool = False) -> str | None:
    return skip_reason(
        content,
        author_is_bot=False,
        author_in_voice=True,
        rules=rules,
        stage_audience=stage_audience,
    )


def test_a_required_prefix_reads_only_the_messages_that_start_with_it() -> None:
    rules = NarrationRules(require_prefix="!")
    assert reason("hello", rules) == "does not start with the prefix this server requires"
    assert reason("!hello", rules) is None
    assert reason("  !hello", rules) is None
    assert reason("hello", NarrationRules()) is None


def test_the_required_prefix_is_not_read() -> None:
    rules = NarrationRules(require_prefix="!", say_names=False)
    reading = Narrator().compose(
        MessageFacts("  !read me"), channel_id=1, author_id=2, author_name="Al", rules=rules
    )
    assert reading.text == "read me"


def test_a_stage_audience_is_skipped_only_where_the_server_asks() -> None:
    assert reason("hi", NarrationRules(), stage_audience=True) is None
    ignoring = NarrationRules(ignore_stage_audience=True)
    assert reason("hi", ignoring, stage_audience=True) == "author is in a Stage's audience"
    assert reason("hi", ignoring, stage_audience=False) is None


@pytest.mark.parametrize(
    ("most", "heard"),
    [(3, "aaa!!! hahaha"), (2, "aa!! haha"), (0, "aaaaaaa!!!!!!! hahahahaha")],
)
def test_repeated_characters_are_read_at_most_the_servers_count(most: int, heard: str) -> None:
    options = CleanupOptions(max_repeat=most)
    assert clean_message(MessageFacts("aaaaaaa!!!!!!! hahahahaha"), options) == heard


def test_a_repeat_count_of_one_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or at least 2"):
        CleanupOptions(max_repeat=1)


def test_a_long_run_shortens_without_losing_what_follows() -> None:
    text = "a" * 200_000 + " end " + "ab" * 100_000 + " done"
    assert clean_message(MessageFacts(text), CleanupOptions(max_length=4000)) == (
        "aaa end ababab done"
    )
