"""Secrets out of text, whole or in pieces: no run of 8 or more characters of a secret
survives, whatever stands beside it, and text holding no such run is left as it was."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.redaction import (
    MIN_RUN,
    REDACTED,
    Redactor,
    redact,
    url_without_secrets,
    urls_without_secrets,
)

#: What real keys and tokens are made of (Segmind: "SG_" and hex; Discord: base64url and dots).
KEY_CHARS = string.ascii_letters + string.digits + "_-"
PUNCTUATION = list(".=/:;,'\"()[]{}<>?!&%+*#@$^|~`\\ \t\n-_")
UNICODE = ["…", "é", "→", "\u200b", "ß", "İ", "😀", "ـ", "中", "\u00a0"]

realistic_keys = st.one_of(
    st.text(KEY_CHARS, min_size=MIN_RUN, max_size=64),
    st.builds(lambda h: "SG_" + h, st.text("0123456789abcdef", min_size=16, max_size=40)),
)
#: Anything at all, brackets and the word "redacted" included: the mark must not help a leak.
odd_keys = st.one_of(
    st.text(min_size=MIN_RUN, max_size=40),
    st.builds(lambda a, b: a + "redacted" + b, st.text(max_size=8), st.text(max_size=8)),
    st.text("[]redact", min_size=MIN_RUN, max_size=24),
)
neighbour = st.one_of(
    st.sampled_from(PUNCTUATION),
    st.sampled_from(UNICODE),
    st.characters(codec="utf-8"),
    st.sampled_from(list(KEY_CHARS)),
)
prose = st.text(st.characters(codec="utf-8"), max_size=120)


def runs_of(secret: str) -> set[str]:
    return {secret[i : i + MIN_RUN] for i in range(len(secret) - MIN_RUN + 1)}


def leaked(text: str, secret: str) -> list[str]:
    """The runs of MIN_RUN characters of `secret` found in `text`."""
    return sorted(run for run in runs_of(secret) if run in text)


@st.composite
def pieces(draw: st.DrawFn, key: str) -> str:
    """The whole key, a prefix, a suffix or a middle part, each MIN_RUN characters or more."""
    kind = draw(st.sampled_from(["whole", "prefix", "suffix", "middle"]))
    if kind == "whole":
        return key
    length = draw(st.integers(MIN_RUN, len(key)))
    if kind == "prefix":
        return key[:length]
    if kind == "suffix":
        return key[len(key) - length :]
    start = draw(st.integers(0, len(key) - length))
    return key[start : start + length]


@st.composite
def echoes(draw: st.DrawFn, keys: st.SearchStrategy[str]) -> tuple[str, str]:
    """(key, text): prose with one to three pieces of the key, each between neighbours."""
    key = draw(keys)
    parts = [draw(prose)]
    for _ in range(draw(st.integers(1, 3))):
        before = "".join(draw(st.lists(neighbour, min_size=0, max_size=3)))
        after = "".join(draw(st.lists(neighbour, min_size=0, max_size=3)))
        parts += [before, draw(pieces(key)), after, draw(prose)]
    return key, "".join(parts)


@given(echoes(realistic_keys))
def test_no_run_of_eight_of_the_key_survives_whatever_surrounds_it(
    echo: tuple[str, str],
) -> None:
    key, text = echo
    assert not leaked(Redactor([key])(text), key)


@given(echoes(odd_keys))
def test_the_mark_itself_never_completes_a_piece_of_an_odd_key(echo: tuple[str, str]) -> None:
    key, text = echo
    assert not leaked(Redactor([key])(text), key)


@given(realistic_keys, prose)
def test_text_holding_no_piece_of_the_key_is_left_as_it_was(key: str, text: str) -> None:
    if not leaked(text, key):
        assert Redactor([key])(text) == text


@given(echoes(realistic_keys), st.integers(1, 200))
def test_a_cut_after_redaction_leaves_no_piece(echo: tuple[str, str], limit: int) -> None:
    key, text = echo
    assert not leaked(Redactor([key])(text)[:limit], key)


def test_the_reported_leak_is_gone() -> None:
    """The truncated echo a member saw: 12 of the key's 19 characters, glued to `=`."""
    key = "SG_4f9c2e71a8b3d605"
    said = f"invalid api_key={key[:12]}… (see docs.segmind.com/keys/{key[3:15]}.)"
    shown = redact(said, [key])
    assert shown == f"invalid api_key={REDACTED}… (see docs.segmind.com/keys/{REDACTED}.)"


def test_every_secret_is_removed_and_short_ones_are_left_alone() -> None:
    token, key = "MTIz.Xy-token-part.abcdEFGH", "SG_0123456789abcdef"
    shown = redact(f"{token[5:20]} and {key[2:]} and short", [token, key, "short"])
    assert shown == f"{REDACTED} and {REDACTED} and short"
    assert not Redactor(["tiny"])
    assert Redactor([])("anything at all") == "anything at all"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pass@host/?key=SG_1234567890", "https://host/"),
        ("https://api.segmind.com/v1", "https://api.segmind.com/v1"),
        ("http://127.0.0.1:8089/v1?key=abc#frag", "http://127.0.0.1:8089/v1"),
        ("https://discord.com/api/v10/users/@me", "https://discord.com/api/v10/users/@me"),
        ("redis://:pw@[::1]:6379/0", "redis://[::1]:6379/0"),
        ("sqlite:///srv/bot.db", "sqlite:///srv/bot.db"),
        ("unix:///run/redis.sock?password=pw", "unix:///run/redis.sock"),
    ],
)
def test_a_url_is_shown_without_userinfo_query_or_fragment(url: str, shown: str) -> None:
    assert url_without_secrets(url) == shown


def test_urls_in_text_lose_their_secrets_and_keep_the_punctuation_around_them() -> None:
    text = (
        "could not reach h (SEGMIND_BASE_URL=https://u:p4ss@h/v1?key=SG_abc): see "
        "http://x:y@docs.example/a, or (mysql://)."
    )
    assert urls_without_secrets(text) == (
        "could not reach h (SEGMIND_BASE_URL=https://h/v1): see http://docs.example/a, or "
        "(mysql://)."
    )
