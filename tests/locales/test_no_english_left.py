"""No member-facing sentence is written in English in a cog: every one is a catalogue key.

An AST scan of cogs/ for text literals (plain or f-strings with words in them) handed to what
a member reads: a reply, an edit, a follow-up, an embed's title, fields and footer, a button's
label, a menu's placeholder, and an error's member line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Calls whose positional arguments include text a member reads.
FIRST_ARGUMENT = {
    "_reply",
    "_show",
    "send_message",
    "send",
    "edit_original_response",
    "edit_answer",
    "tell_in_channel",
    "InvalidRequestError",
    "AccessDeniedError",
    "BotError",
}
#: Keyword arguments that are text a member reads, whatever the call.
KEYWORDS = {"content", "title", "description", "name", "value", "text", "label", "placeholder"}
KEYWORD_CALLS = {"Embed", "add_field", "set_footer", "Button", "Select", "BotError"}
#: English words: two in a row make a sentence ("Nothing is playing."), as does one capitalised
#: word with its full stop ("Saved."); a key ("playback.skipped"), a mention or an emoji does not.
WORDS = re.compile(r"[A-Za-z]{2,}[,.;:!?']?\s+[A-Za-z]{2,}|^[A-Z][a-z]+\.\s*$")


def literal_words(node: ast.expr) -> str | None:
    """The English in a literal argument, or None for anything else (a key's rendering)."""
    if isinstance(node, ast.BinOp):  # "Saved.\n" + details
        parts = [literal_words(node.left), literal_words(node.right)]
        return " ".join(part for part in parts if part) or None
    if isinstance(node, ast.IfExp):  # "⏭️ Skipped." if done else "Nothing is playing."
        parts = [literal_words(node.body), literal_words(node.orelse)]
        return " ".join(part for part in parts if part) or None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        found = node.value
    elif isinstance(node, ast.JoinedStr):
        found = "".join(
            part.value
            for part in node.values
            if isinstance(part, ast.Constant) and isinstance(part.value, str)
        )
    else:
        return None
    return found if WORDS.search(found) else None


def call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def english_left(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = call_name(node)
        given: list[ast.expr] = []
        if name in FIRST_ARGUMENT:
            given += node.args
        if name in FIRST_ARGUMENT | KEYWORD_CALLS:
            given += [k.value for k in node.keywords if k.arg in KEYWORDS | {"user_message"}]
        for argument in given:
            words = literal_words(argument)
            if words is not None:
                found.append(f"{path.name}:{node.lineno}: {words!r}")
    return found


def test_the_scan_finds_an_english_reply(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "async def f(i):\n"
        "    await i.response.send_message('Nothing is playing.')\n"
        "    await i.followup.send(f'Saved {x} for you.', ephemeral=True)\n"
        "    embed = Embed(title='Speech settings')\n"
        "    await i.response.send_message(say(i, 'playback.skipped'))\n"
        "    await i.response.send_message(f'⚠️ {note}')\n"
        "    await self._reply(i, 'Saved.\\n' + details)\n"
    )
    assert len(english_left(sample)) == 4


def test_no_cog_writes_a_members_sentence_in_english() -> None:
    left = [line for path in sorted((ROOT / "cogs").glob("*.py")) for line in english_left(path)]
    assert left == []
