"""Message clean-up: what gets said, what must never be said, and the "Alice said" prefix."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.speech.cleanup import (
    MAX_NAME_LENGTH,
    MORE_MARKER,
    CleanupOptions,
    MessageFacts,
    SpeakerPrefixer,
    clean_message,
    clean_name,
    with_prefix,
)

FUZZ = settings(max_examples=200, deadline=None)

USERS = {1: "Alice", 2: "Bob", 3: "big_brain_42"}
ROLES = {10: "Moderators"}
CHANNELS = {20: "general", 21: "memes-and-more"}


def clean(content: str, **options: object) -> str:
    facts = MessageFacts(content, users=USERS, roles=ROLES, channels=CHANNELS)
    return clean_message(facts, CleanupOptions(**options))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "spoken"),
    [
        # Mentions.
        ("<@1> are you coming?", "Alice are you coming?"),
        ("hey <@!2>", "hey Bob"),
        ("thanks <@3>", "thanks big brain 42"),
        ("<@999> left", "someone left"),
        ("ping <@&10>", "ping Moderators"),
        ("<@&11> meeting", "a role meeting"),
        ("see <#20> and <#21>", "see general and memes-and-more"),
        ("go to <#99>", "go to a channel"),
        ("@everyone raid tonight", "everyone raid tonight"),
        ("@here anyone up?", "here anyone up?"),
        ("@silent don't wake them", "don't wake them"),
        ("try </tts voice:123456>", "try /tts voice"),
        # Emoji.
        ("nice <:party_parrot:1234567890>", "nice party parrot"),
        ("<a:cat_dance:99>yay", "cat dance yay"),
        ("I love it 😂🎉", "I love it 😂🎉"),
        # Links.
        ("check https://example.com/a?b=1", "check a link"),
        ("see www.example.com/docs.", "see a link."),
        ("no embed <https://example.com>", "no embed a link"),
        ("https://a.example https://b.example, https://c.example", "links"),
        ("read [the docs](https://docs.example.com/x) first", "read the docs first"),
        ("[quiet](<https://example.com>)", "quiet"),
        ("(https://example.com/wiki)", "(a link)"),
        # Hidden things.
        ("the ending: ||Snape kills Dumbledore||", "the ending: spoiler"),
        ("||a|| and ||b||", "spoiler and spoiler"),
        ("look ```py\nprint('secret')\n``` there", "look code block there"),
        ("```\n<@1> @everyone\n```", "code block"),
        ("run `pip install bot` now", "run pip install bot now"),
        ("meet <t:1700000000:R>!", "meet a time!"),
        ("since <t:1700000000>", "since a time"),
        # Markdown.
        (
            "**bold** *italic* __underline__ ~~strike~~ ***both***",
            "bold italic underline strike both",
        ),
        ("# Big news\n## Smaller\n> quoted\n>>> long quote", "Big news Smaller quoted long quote"),
        ("-# small print\n- one\n* two\n  - nested", "small print one two nested"),
        (r"\*not italic\*", "not italic"),
        ("snake_case_name", "snake case name"),
        # Repeats and whitespace.
        ("soooooo goooood", "sooo goood"),
        ("what!!!!!!??????", "what!!!???"),
        ("hahahahahahaha", "hahaha"),
        ("lolololololol", "lololol"),
        ("😂😂😂😂😂😂", "😂😂😂"),
        ("1000000 dollars in 2222", "1000000 dollars in 2222"),
        ("  lots   of\n\nspace\t ", "lots of space"),
        # Nothing left.
        ("", ""),
        ("** **", ""),
        ("   ", ""),
        ("||hidden||", "spoiler"),
    ],
)
def test_clean_table(content: str, spoken: str) -> None:
    assert clean(content) == spoken


def test_emoji_can_be_dropped() -> None:
    assert clean("nice <:party_parrot:123> <a:x_y:1>!", emoji="drop") == "nice !"
    assert clean("<:blank:1>", emoji="drop") == ""


def test_max_repeat_is_an_option() -> None:
    assert clean("soooooo!!!!!", max_repeat=5) == "sooooo!!!!!"


@pytest.mark.parametrize("options", [{"max_length": 0}, {"max_repeat": 1}])
def test_silly_options_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least"):
        CleanupOptions(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("attachments", "stickers", "spoken"),
    [
        (["image/png"], [], "sent an image"),
        (["image/png", "image/jpeg", "holiday.WEBP"], [], "sent 3 images"),
        (["video/mp4"], [], "sent a video"),
        (["audio/ogg; codecs=opus"], [], "sent an audio clip"),
        (["voice-message.ogg"], [], "sent an audio clip"),
        (["report.pdf"], [], "sent a file"),
        (["application/zip", "notes"], [], "sent 2 files"),
        (["image/png", "report.pdf"], [], "sent an image and a file"),
        (
            ["clip.mov", "image/gif", "a.zip", "b.mp3"],
            [],
            "sent an image, a video, an audio clip and a file",
        ),
        ([], ["Wave"], "sent a sticker: Wave"),
        ([], ["Wave", "Hello_There"], "sent 2 stickers: Wave and Hello There"),
        (["image/png"], ["Wave"], "sent an image and a sticker: Wave"),
        ([], ["<@1>"], "sent a sticker: someone"),
    ],
)
def test_attachments_and_stickers_are_described(
    attachments: list[str], stickers: list[str], spoken: str
) -> None:
    facts = MessageFacts("", attachments=attachments, stickers=stickers)
    assert clean_message(facts) == spoken


@pytest.mark.parametrize(
    ("content", "spoken"),
    [
        ("look at this", "look at this, and sent an image"),
        ("look at this!", "look at this! And sent an image"),
        ("||spoiler pic||", "spoiler, and sent an image"),
    ],
)
def test_description_follows_the_text(content: str, spoken: str) -> None:
    assert clean_message(MessageFacts(content, attachments=["image/png"])) == spoken


def test_long_messages_are_cut_at_a_word_with_a_marker() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 20
    spoken = clean(text, max_length=60)
    assert spoken == "The quick brown fox jumps over the lazy dog. The" + MORE_MARKER
    assert len(spoken) <= 60


def test_cutting_keeps_the_attachment_description() -> None:
    facts = MessageFacts("word " * 200, attachments=["image/png"])
    spoken = clean_message(facts, CleanupOptions(max_length=80))
    assert len(spoken) <= 80
    assert spoken.endswith(f"{MORE_MARKER}, and sent an image")


def test_a_tiny_limit_is_still_respected() -> None:
    assert clean("hello world", max_length=3) == "hel"
    assert (
        len(clean_message(MessageFacts("", stickers=["x" * 50]), CleanupOptions(max_length=7))) <= 7
    )


def test_a_cut_never_leaves_markup_behind() -> None:
    """Cut after a lone "#", the rest would read as a header: "# … and more"."""
    assert clean("#abcdefghijklmnopqrstuvwxyz", max_length=12) == MORE_MARKER.strip()


def test_counting_the_cut_happens_after_cleanup() -> None:
    """Markup does not count: a long link is two words, not 200 characters."""
    assert clean("see https://example.com/" + "x" * 400, max_length=20) == "see a link"


# --- Names and the "Alice said" prefix ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "spoken"),
    [
        ("Alice", "Alice"),
        ("**Bob** ~~the~~ Builder", "Bob the Builder"),
        ("@everyone", "everyone"),
        ("<@123> <#4> <:x_y:5>", "someone a channel x y"),
        ("xX_sniper_Xx", "xX sniper Xx"),
        ("Aaaaaaaaaaron", "Aaaaron"),
        ("a" + " very" * 20, "a very very very very very very"),
        ("abcdefghij" * 5, ("abcdefghij" * 4)[:MAX_NAME_LENGTH]),
        ("  ", ""),
    ],
)
def test_clean_name(name: str, spoken: str) -> None:
    assert clean_name(name) == spoken
    assert len(clean_name(name)) <= MAX_NAME_LENGTH


def test_the_same_speaker_is_announced_once_per_window() -> None:
    prefixer = SpeakerPrefixer(window=60)
    assert prefixer.prefix(1, 100, "Alice", now=0) == "Alice said"
    assert prefixer.prefix(1, 100, "Alice", now=30) is None
    assert prefixer.prefix(1, 100, "Alice", now=90) is None  # Within 60 s of the last message.
    assert prefixer.prefix(1, 100, "Alice", now=151) == "Alice said"


def test_another_speaker_in_between_resets() -> None:
    prefixer = SpeakerPrefixer()
    assert prefixer.prefix(1, 100, "Alice", now=0) == "Alice said"
    assert prefixer.prefix(1, 200, "Bob", now=1) == "Bob said"
    assert prefixer.prefix(1, 100, "Alice", now=2) == "Alice said"


def test_prefixes_are_per_channel() -> None:
    prefixer = SpeakerPrefixer()
    assert prefixer.prefix(1, 100, "Alice", now=0) == "Alice said"
    assert prefixer.prefix(2, 100, "Alice", now=1) == "Alice said"
    assert prefixer.prefix(1, 100, "Alice", now=2) is None


def test_replies_and_awkward_names() -> None:
    prefixer = SpeakerPrefixer()
    assert prefixer.prefix(1, 100, "**Al** <@1>", now=0, reply=True) == "Al someone replied"
    assert prefixer.prefix(1, 200, "@here", now=1) == "here said"
    assert prefixer.prefix(1, 300, "||", now=2) == "someone said"


def test_prefixer_memory_is_bounded_by_the_window() -> None:
    prefixer = SpeakerPrefixer(window=60)
    for channel in range(1000):
        prefixer.prefix(channel, 100, "Alice", now=channel / 100)
    assert len(prefixer) == 1000
    assert prefixer.prefix(5000, 100, "Alice", now=1000) == "Alice said"
    assert len(prefixer) == 1


def test_with_prefix() -> None:
    assert with_prefix("Alice said", "hello") == "Alice said: hello"
    assert with_prefix(None, "hello") == "hello"
    assert with_prefix("Alice said", "") == ""


# --- Properties -----------------------------------------------------------------------------

MARKUP = [
    "<@1>",
    "<@!2>",
    "<@999>",
    "<@&10>",
    "<@&11>",
    "<#20>",
    "<#99>",
    "@everyone",
    "@here",
    "@silent ",
    "<:party_parrot:123>",
    "<a:cat_dance:9>",
    "<t:1700000000:R>",
    "</tts voice:1>",
    "https://example.com/a_b",
    "<https://example.com>",
    "[text](https://x.example)",
    "www.example.com",
    "||spoiler||",
    "```py\ncode\n```",
    "`inline`",
    "||",
    "```",
    "`",
    "**",
    "*",
    "_",
    "__",
    "~~",
    "\\",
    "> ",
    ">>> ",
    "# ",
    "-# ",
    "- ",
    "\n",
    " ",
    "<",
    ">",
    "@",
    "<@",
    "<@&",
    "<#",
    "<t:",
    "<:",
    "<a:",
    ":",
    "!",
    "&",
    "#",
    "1",
    "everyone",
    "here",
    "hahahaha",
    "ooooooo",
    "!!!!!!",
]
MARKUP_PIECES = st.sampled_from(MARKUP)
contents = st.lists(st.one_of(MARKUP_PIECES, st.text(max_size=8)), max_size=30).map("".join)
names = st.lists(st.one_of(MARKUP_PIECES, st.text(max_size=6)), max_size=6).map("".join)
options = st.builds(
    CleanupOptions,
    emoji=st.sampled_from(["name", "drop"]),
    max_length=st.integers(1, 400),
    max_repeat=st.integers(2, 5),
)
facts = st.builds(
    MessageFacts,
    content=contents,
    users=st.dictionaries(st.sampled_from([1, 2, 999]), names, max_size=3),
    roles=st.dictionaries(st.sampled_from([10, 11]), names, max_size=2),
    channels=st.dictionaries(st.sampled_from([20, 99]), names, max_size=2),
    attachments=st.lists(st.sampled_from(["image/png", "video/mp4", "audio/ogg", "a.pdf"])),
    stickers=st.lists(names, max_size=3),
)

PINGS = ("<@", "<@!", "<@&", "<#", "<t:", "<:", "<a:", "@everyone", "@here")


@FUZZ
@given(facts=facts, options=options)
def test_nothing_can_ping_or_parse_and_the_limit_holds(
    facts: MessageFacts, options: CleanupOptions
) -> None:
    spoken = clean_message(facts, options)
    for ping in PINGS:
        assert ping not in spoken.lower()
    assert len(spoken) <= options.max_length
    assert spoken == spoken.strip()
    assert "  " not in spoken


@FUZZ
@given(name=names)
def test_names_cannot_ping(name: str) -> None:
    spoken = clean_name(name)
    assert not any(ping in spoken.lower() for ping in PINGS)
    assert len(spoken) <= MAX_NAME_LENGTH


# Around the secrets, markup without pipes or backticks, so that every || and ``` is paired.
SAFE_MARKUP = [piece for piece in MARKUP if "|" not in piece and "`" not in piece]
visible = st.lists(
    st.one_of(
        st.sampled_from([*SAFE_MARKUP, "||shown?||", "```\nx\n```"]),
        st.text(st.characters(blacklist_characters="|`Q"), max_size=8),
    ),
    max_size=8,
).map("".join)
secrets = st.from_regex(r"Q[a-z]{2,6}Q", fullmatch=True)
spoiler_insides = st.lists(
    st.one_of(st.sampled_from(SAFE_MARKUP), st.text(st.characters(blacklist_characters="|"))),
    max_size=4,
).map("".join)
code_insides = st.lists(
    st.one_of(st.sampled_from(SAFE_MARKUP), st.text(st.characters(blacklist_characters="`"))),
    max_size=4,
).map("".join)


@FUZZ
@given(
    before=visible,
    after=visible,
    secret=secrets,
    inside=st.tuples(spoiler_insides, spoiler_insides, code_insides, code_insides),
    options=options,
)
def test_spoilers_and_code_blocks_are_never_read(
    before: str,
    after: str,
    secret: str,
    inside: tuple[str, str, str, str],
    options: CleanupOptions,
) -> None:
    spoiler = f"||{inside[0]}{secret}{inside[1]}||"
    code = f"```{inside[2]}{secret}{inside[3]}```"
    facts = MessageFacts(f"{before}{spoiler}{after}{code}{before}", users=USERS)
    spoken = clean_message(facts, replace(options, max_length=10_000))
    assert secret not in spoken
    assert "spoiler" in spoken
    assert "code block" in spoken


@FUZZ
@given(facts=facts, options=options)
def test_cleaning_twice_changes_nothing(facts: MessageFacts, options: CleanupOptions) -> None:
    once = clean_message(facts, options)
    assert clean_message(MessageFacts(once), options) == once


def test_a_flood_of_spoilers_or_code_blocks_is_named_a_few_times() -> None:
    many = clean_message(MessageFacts("||a||" * 500 + " then " + "```x```" * 500))
    assert many == "spoiler spoiler spoiler then code block code block code block"
    assert clean_message(MessageFacts("||a|| ||b||")) == "spoiler spoiler"
