"""The emulator refuses components as Discord does, so the bot's menus are held to Discord's
limits: 25 options a select menu, 5 rows, unique custom ids of at most 100 characters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.discord_emulator.components import check_components, find_component
from tests.e2e.discord_emulator.messages import DiscordError


def select(custom_id: str, options: int) -> dict[str, Any]:
    choices = [{"label": str(n), "value": str(n)} for n in range(options)]
    return {"type": 1, "components": [{"type": 3, "custom_id": custom_id, "options": choices}]}


def test_menus_within_discords_limits_pass() -> None:
    check_components([select("a", 25), select("b", 5)])


@pytest.mark.parametrize(
    "rows",
    [
        [select("a", 26)],
        [select(str(n), 1) for n in range(6)],
        [select("same", 1), select("same", 1)],
        [select("x" * 101, 1)],
        [{"type": 1, "components": [*select("a", 1)["components"], *select("b", 1)["components"]]}],
    ],
)
def test_what_discord_refuses_is_refused(rows: list[dict[str, Any]]) -> None:
    with pytest.raises(DiscordError) as refused:
        check_components(rows)
    assert refused.value.body["code"] == 50035


def test_only_a_component_on_the_message_can_be_used() -> None:
    message = {"components": [select("menu", 2)]}
    assert find_component(message, "menu")["type"] == 3
    with pytest.raises(ValueError, match="no component"):
        find_component(message, "other")
