"""Who may choose how narration announces a member: Discord's own rule for nicknames.

A spoken name is what narration says before a member's words ("Alice said …"), so it can
pass one member off as another just as a nickname can. It follows the nickname rule:
setting one takes Change Nickname in the server it is set from, clearing someone else's
takes Manage Nicknames there (what Discord asks to change another member's nickname), and
clearing one's own takes nothing.

The name is stored once per member, not per server, so a name set where the member may
change their nickname would otherwise be said in a server that forbids it. Narration
therefore says it only where its owner may change their nickname; elsewhere it reads the
display name Discord shows, which that server controls.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.locales import line

__all__ = ["NameRights", "announced_name", "name_refusal"]


@dataclass(frozen=True, slots=True)
class NameRights:
    """What the member asking may do about names where they ask: no Discord types."""

    #: Asked from a server; False in a DM, where no server's permissions apply.
    in_server: bool
    #: Has Change Nickname there: may choose how they themselves are shown.
    change_nickname: bool = False
    #: Has Manage Nicknames there: may change how others are shown.
    manage_nicknames: bool = False


def name_refusal(rights: NameRights, *, clearing: bool, own: bool) -> str | None:
    """Why this member may not set or clear this spoken name, or None if they may."""
    if own and clearing:
        return None  # Going back to one's display name impersonates nobody.
    if not own:
        if not clearing:
            return line("names.only_clear")
        if not rights.in_server:
            return line("names.clear_in_server")
        if rights.manage_nicknames:
            return None
        return line("names.needs_manage")
    if not rights.in_server:
        return line("names.set_in_server")
    if rights.change_nickname:
        return None
    return line("names.no_nickname")


def announced_name(spoken: str | None, display: str, *, may_change_nickname: bool) -> str:
    """The name narration says for a member in a server: their spoken name only where they
    may change their nickname, since it was chosen once for every server."""
    if spoken and may_change_nickname:
        return spoken
    return display
