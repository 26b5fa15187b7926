"""Who may set or clear a spoken name, and where it is said: the nickname rule."""

from __future__ import annotations

import pytest

from bot.speech.names import NameRights, announced_name, name_refusal

MEMBER = NameRights(in_server=True)
RENAMES = NameRights(in_server=True, change_nickname=True)
MANAGER = NameRights(in_server=True, manage_nicknames=True)
IN_DM = NameRights(in_server=False)


def test_setting_ones_own_name_needs_change_nickname() -> None:
    assert name_refusal(RENAMES, clearing=False, own=True) is None
    refusal = name_refusal(MEMBER, clearing=False, own=True)
    assert refusal is not None
    assert "Change Nickname" in refusal
    assert "Nothing was saved" in refusal


def test_managing_nicknames_alone_does_not_let_a_member_name_themselves() -> None:
    assert name_refusal(MANAGER, clearing=False, own=True) is not None


def test_a_name_cannot_be_set_from_a_dm_where_no_server_grants_it() -> None:
    refusal = name_refusal(
        NameRights(in_server=False, change_nickname=True), clearing=False, own=True
    )
    assert refusal is not None
    assert "from a server" in refusal


@pytest.mark.parametrize("rights", [MEMBER, RENAMES, MANAGER, IN_DM])
def test_anyone_may_clear_their_own_name_anywhere(rights: NameRights) -> None:
    assert name_refusal(rights, clearing=True, own=True) is None


def test_clearing_someone_elses_name_needs_manage_nicknames() -> None:
    assert name_refusal(MANAGER, clearing=True, own=False) is None
    for rights in (MEMBER, RENAMES):
        refusal = name_refusal(rights, clearing=True, own=False)
        assert refusal is not None
        assert "Manage Nicknames" in refusal


def test_nobody_can_set_someone_elses_name() -> None:
    everything = NameRights(in_server=True, change_nickname=True, manage_nicknames=True)
    refusal = name_refusal(everything, clearing=False, own=False)
    assert refusal is not None
    assert "only clear" in refusal


def test_someone_elses_name_is_not_cleared_from_a_dm() -> None:
    refusal = name_refusal(
        NameRights(in_server=False, manage_nicknames=True), clearing=True, own=False
    )
    assert refusal is not None
    assert "only in a server" in refusal


def test_the_spoken_name_is_said_only_where_its_owner_may_change_their_nickname() -> None:
    assert announced_name("Nwin", "Nguyen", may_change_nickname=True) == "Nwin"
    assert announced_name("Nwin", "Nguyen", may_change_nickname=False) == "Nguyen"
    assert announced_name(None, "Nguyen", may_change_nickname=True) == "Nguyen"
