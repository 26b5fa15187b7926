"""Every message the code asks for by key exists in English and is given all its fields:
an AST scan of bot/ and cogs/ for `line(...)`, `Line(...)`, `text(...)` and `say(...)` with a
literal key (both keys of a conditional), so a typo or a missing field fails here rather than
in front of a member."""

from __future__ import annotations

import ast
import copy
import pickle
from pathlib import Path

from bot.locales import CATALOGUES, ENGLISH, Line, line, placeholders

ROOT = Path(__file__).resolve().parents[2]
ENGLISH_MESSAGES = CATALOGUES[ENGLISH]

#: Where the key is among each helper's positional arguments.
KEY_POSITION = {"line": 0, "Line": 0, "text": 0, "say": 1, "t": 0}


def literal_keys(node: ast.expr) -> list[str] | None:
    """The key(s) an argument names, or None when it is computed (an f-string, a variable)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = literal_keys(node.body), literal_keys(node.orelse)
        return body + orelse if body is not None and orelse is not None else None
    return None


def call_sites() -> list[tuple[str, str, set[str] | None]]:
    """(where, key, the keyword fields given; None when `**fields` passes them on)."""
    found = []
    for folder in ("bot", "cogs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "locales" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                    continue
                position = KEY_POSITION.get(node.func.id)
                if position is None or len(node.args) <= position:
                    continue
                keys = literal_keys(node.args[position])
                if keys is None:
                    continue
                named = {k.arg for k in node.keywords if k.arg is not None}
                fields = None if any(k.arg is None for k in node.keywords) else named
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found += [(where, key, fields) for key in keys]
    return found


def needs(key: str) -> frozenset[str]:
    return placeholders(ENGLISH_MESSAGES[key])


def test_the_scan_sees_the_code_asking_for_messages() -> None:
    assert len(call_sites()) > 150


def test_every_key_the_code_asks_for_is_in_the_english_catalogue() -> None:
    missing = [f"{where}: {key}" for where, key, _ in call_sites() if key not in ENGLISH_MESSAGES]
    assert missing == []


def test_every_call_gives_a_message_all_its_fields() -> None:
    """Every field the English fills in is given (a missing one would raise as the message is
    made); a "1 minute" / "{count} minutes" pair may share the count it does not all use."""
    wrong = [
        f"{where}: {key} given {sorted(fields)}, needs {sorted(needs(key))}"
        for where, key, fields in call_sites()
        if key in ENGLISH_MESSAGES and fields is not None and not needs(key) <= fields
    ]
    assert wrong == []


def test_a_line_survives_a_copy_and_a_pickle_with_its_key() -> None:
    told = line("voice_message.not_allowed", how=Line("voice_message.leave_out"))
    for again in (copy.copy(told), copy.deepcopy(told), pickle.loads(pickle.dumps(told))):
        assert isinstance(again, Line)
        assert again == told
        assert again.to("de") == told.to("de")
