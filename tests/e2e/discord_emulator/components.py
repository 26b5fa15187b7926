"""Message components as Discord checks them when a message is sent (rows, select menus,
buttons, custom ids) and finds them when a member uses one, so a component interaction
(type 3) carries what a client would send: the component's custom id and type, the values
picked, and the message it is on."""

from __future__ import annotations

from typing import Any

from tests.e2e.discord_emulator.messages import invalid

__all__ = ["MAX_OPTIONS", "MAX_ROWS", "check_components", "find_component"]

ACTION_ROW, BUTTON, STRING_SELECT = 1, 2, 3
MAX_ROWS = 5
MAX_OPTIONS = 25
MAX_CUSTOM_ID = 100
#: Buttons to a row; a select menu fills its row alone.
MAX_BUTTONS = 5


def check_components(rows: list[dict[str, Any]]) -> None:
    """Refuse what Discord refuses (50035): more than 5 rows, a row of more than 5 buttons or
    a select menu beside anything, more than 25 options, a custom id missing, over 100
    characters or used twice in the message."""
    if len(rows) > MAX_ROWS:
        raise invalid("components", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ROWS} or fewer.")
    seen: set[str] = set()
    for r, row in enumerate(rows):
        where = f"components.{r}"
        items = row.get("components") or []
        if row.get("type") != ACTION_ROW or not items:
            raise invalid(where, "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "An action row holds items.")
        selects = [item for item in items if item.get("type") == STRING_SELECT]
        if (selects and len(items) > 1) or len(items) > MAX_BUTTONS:
            raise invalid(where, "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "Too wide.")
        for c, item in enumerate(items):
            custom_id = item.get("custom_id")
            if item.get("type") == BUTTON and item.get("style") == 5:
                continue  # A link button has a url instead.
            if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= MAX_CUSTOM_ID:
                raise invalid(
                    f"{where}.components.{c}.custom_id",
                    "BASE_TYPE_BAD_LENGTH",
                    f"Must be between 1 and {MAX_CUSTOM_ID} in length.",
                )
            if custom_id in seen:
                raise invalid(
                    f"{where}.components.{c}.custom_id",
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)
            if item.get("type") == STRING_SELECT and not (
                1 <= len(item.get("options") or []) <= MAX_OPTIONS
            ):
                raise invalid(
                    f"{where}.components.{c}.options",
                    "BASE_TYPE_BAD_LENGTH",
                    f"Must be between 1 and {MAX_OPTIONS} in length.",
                )


def find_component(message: dict[str, Any], custom_id: str) -> dict[str, Any]:
    """The component a member can use on `message`; a client shows nothing else, so any
    other custom id is a broken test."""
    for row in message.get("components") or []:
        for item in row.get("components") or []:
            if item.get("custom_id") == custom_id:
                return dict(item)
    raise ValueError(f"the message has no component {custom_id!r}")
