"""What one merged narration call says: one member's words, or a two-speaker dialogue."""

from __future__ import annotations

from bot.speech.merging import (
    JoinWaiting,
    Merged,
    Part,
    ReadAlone,
    decide_merge,
    speaker_label,
)

ALICE, BOB = 1, 2


def part(message_id: int, author: int, words: str, prefix: str | None = None) -> Part:
    name = {ALICE: "Alice", BOB: "Bob"}[author]
    text = f"{prefix}: {words}" if prefix else words
    return Part(message_id, author, name, text, prefix)


def test_one_members_messages_follow_each_other_in_one_voice() -> None:
    merged = Merged((part(1, ALICE, "hi", "Alice said"), part(2, ALICE, "how are you")))
    assert merged.speakers == (ALICE,)
    # One speaker is never written as a dialogue, whatever is asked.
    assert merged.text(dialogue=True) == "Alice said: hi how are you"


def test_two_members_become_one_line_per_turn_with_their_said_kept() -> None:
    merged = Merged(
        (
            part(1, ALICE, "hi", "Alice said"),
            part(2, ALICE, "anyone here?"),
            part(3, BOB, "me", "Bob said"),
            part(4, ALICE, "great", "Alice said"),
        )
    )
    assert merged.speakers == (ALICE, BOB)
    assert merged.message_ids == (1, 2, 3, 4)
    assert merged.text(dialogue=True) == (
        "Alice: Alice said: hi anyone here?\nBob: Bob said: me\nAlice: Alice said: great"
    )
    # Without two voices the words simply follow each other; "X said" tells them apart.
    assert merged.text(dialogue=False) == (
        "Alice said: hi anyone here? Bob said: me Alice said: great"
    )


def test_labels_are_safe_and_distinct() -> None:
    assert speaker_label("Dr: Who\nreally", "Speaker 1") == "Dr Who really"
    assert speaker_label(":::", "Speaker 2") == "Speaker 2"
    same = Merged((Part(1, ALICE, "Alex", "a"), Part(2, BOB, "alex", "b")))
    assert same.labels() == {ALICE: "Alex", BOB: "alex 2"}
    assert same.text(dialogue=True) == "Alex: a\nalex 2: b"


def test_a_deleted_message_hands_its_said_on_to_the_next_of_the_same_member() -> None:
    merged = Merged(
        (part(1, ALICE, "first", "Alice said"), part(2, ALICE, "second"), part(3, BOB, "x", "B"))
    )
    rest = merged.without(1)
    assert rest is not None
    assert rest.text(dialogue=False) == "Alice said: second B: x"
    assert rest.parts[0].prefix == "Alice said"
    # A middle message goes without touching the others.
    assert merged.without(2) == Merged((merged.parts[0], merged.parts[2]))
    # An unknown id changes nothing; the last message leaves nothing.
    assert merged.without(99) is merged
    assert Merged((part(1, ALICE, "only"),)).without(1) is None


def test_a_said_is_not_handed_to_another_member() -> None:
    merged = Merged((part(1, ALICE, "first", "Alice said"), part(2, BOB, "x", "Bob said")))
    rest = merged.without(1)
    assert rest is not None
    assert rest.text(dialogue=True) == "Bob said: x"


def test_a_member_who_now_follows_themself_is_not_announced_twice() -> None:
    merged = Merged(
        (
            part(1, ALICE, "one", "Alice said"),
            part(2, BOB, "two", "Bob said"),
            part(3, ALICE, "three", "Alice said"),
        )
    )
    rest = merged.without(2)
    assert rest is not None
    assert rest.speakers == (ALICE,)
    assert rest.text(dialogue=True) == "Alice said: one three"


VOICES = {ALICE: "Kore", BOB: "Puck"}


def decide(
    waiting: Merged | None,
    new: Part,
    *,
    enabled: bool = True,
    unmade: bool = True,
    two_speakers: bool = False,
    voices: dict[int, str] = VOICES,
    limit: int = 500,
) -> object:
    return decide_merge(
        waiting,
        new,
        enabled=enabled,
        unmade=unmade,
        two_speakers=two_speakers,
        voices=voices,
        limit=limit,
    )


def test_a_members_next_message_joins_their_unmade_waiting_call() -> None:
    waiting = Merged((part(1, ALICE, "hi", "Alice said"),))
    decision = decide(waiting, part(2, ALICE, "there"))
    assert isinstance(decision, JoinWaiting)
    assert decision.voices is None
    assert decision.text() == "Alice said: hi there"


def test_each_refusal_says_why_and_nothing_joins() -> None:
    waiting = Merged((part(1, ALICE, "hi", "Alice said"),))
    cases = {
        "merging is off": decide(waiting, part(2, ALICE, "x"), enabled=False),
        "nothing is waiting": decide(None, part(2, ALICE, "x")),
        "the waiting call is already being made": decide(
            waiting, part(2, ALICE, "x"), unmade=False
        ),
        "another speaker": decide(waiting, part(2, BOB, "x", "Bob said")),
        "too long to share a call": decide(waiting, part(2, ALICE, "x" * 30), limit=30),
    }
    for reason, decision in cases.items():
        assert decision == ReadAlone(reason)


def test_two_speakers_join_only_with_the_setting_and_never_a_third() -> None:
    waiting = Merged((part(1, ALICE, "hi", "Alice said"),))
    decision = decide(waiting, part(2, BOB, "yo", "Bob said"), two_speakers=True)
    assert isinstance(decision, JoinWaiting)
    assert decision.voices == ("Kore", "Puck")
    assert decision.text() == "Alice: Alice said: hi\nBob: Bob said: yo"
    carol = Part(3, 3, "Carol", "Carol said: hey", "Carol said")
    third = decide(decision.merged, carol, two_speakers=True, voices={**VOICES, 3: "Zephyr"})
    assert third == ReadAlone("another speaker")


def test_an_edit_changes_only_its_own_words() -> None:
    merged = Merged((part(1, ALICE, "hi", "Alice said"), part(2, ALICE, "tpyo")))
    assert merged.with_text(2, "typo").text(dialogue=False) == "Alice said: hi typo"
    assert merged.part(3) is None
